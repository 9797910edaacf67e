"""The admin password: configured or generated once, stored only as a hash, checked through a throttle."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from chatbot.access.throttle import SignInThrottle

_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def _derive(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)


@dataclass(frozen=True)
class Attempt:
    """The result of a sign-in attempt: right or not, and how long to wait (for whom) before the next."""

    ok: bool
    wait: float = 0.0
    scope: str = ""  # "client" (this browser session) or "everyone"


class AdminAuth:
    """Checks the admin password in constant time; a throttle slows whoever keeps getting it wrong."""

    def __init__(self, state_dir: Path, configured_password: str = "", throttle: SignInThrottle | None = None):
        self._dir = state_dir
        self._dir.mkdir(parents=True, exist_ok=True)
        self.throttle = throttle
        if configured_password:
            self._salt = secrets.token_bytes(16)
            self._hash = _derive(configured_password, self._salt)
            self.generated = False
        else:
            self._salt, self._hash = self._load_or_generate()
            self.generated = True

    def _load_or_generate(self) -> tuple[bytes, bytes]:
        path = self._dir / "admin-password.json"
        if not path.exists():
            password = secrets.token_urlsafe(12)
            salt = secrets.token_bytes(16)
            # A private file of its own (mkstemp: mode 0600, a unique name), even for threads of one process.
            fd, name = tempfile.mkstemp(prefix=".admin-password.", suffix=".tmp", dir=self._dir)
            tmp = Path(name)
            with os.fdopen(fd, "w") as out:
                out.write(json.dumps({"salt": salt.hex(), "hash": _derive(password, salt).hex(), "created": time.time()}))
            try:
                # link() refuses to overwrite: of two servers starting at once, exactly one wins.
                os.link(tmp, path)
                # Shown once, on the server console only; only the hash is kept.
                print(
                    f"\n  No admin password is configured. Generated one for this data directory:\n\n"
                    f"      {password}\n\n  Set admin_password in .streamlit/secrets.toml "
                    "(or CHATBOT_ADMIN_PASSWORD) to choose your own.\n",
                    file=sys.stderr, flush=True,
                )
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        data = json.loads(path.read_text())
        return bytes.fromhex(data["salt"]), bytes.fromhex(data["hash"])

    def attempt(self, password: str, client: str = "") -> Attempt:
        """Check a password from `client` unless it must wait; wrong ones slow that client, then everyone."""
        if self.throttle is not None:
            wait = self.throttle.admit(client)  # holds this client's turn while the form is paused
            if wait.seconds > 0:
                return Attempt(False, wait.seconds, wait.scope)
        if hmac.compare_digest(_derive(password, self._salt), self._hash):
            if self.throttle is not None:
                self.throttle.succeeded(client)
            return Attempt(True)
        if self.throttle is None:
            return Attempt(False)
        wait = self.throttle.failed(client)
        return Attempt(False, wait.seconds, wait.scope)

    def check(self, password: str, client: str = "") -> bool:
        """True for the right password (and a client that need not wait)."""
        return self.attempt(password, client).ok

    def locked_for(self, client: str = "") -> float:
        """Seconds until the form is open to this client again; 0 when it is open."""
        return self.throttle.wait(client).seconds if self.throttle is not None else 0.0
