"""The admin password: configured or generated once, stored only as a hash, with a lockout."""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

MAX_ATTEMPTS = 5
LOCKOUT_SECONDS = 300
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def _derive(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


class AdminAuth:
    """Checks the admin password in constant time; five wrong attempts from one client lock it out."""

    def __init__(self, state_dir: Path, configured_password: str = "", clock=time.time):
        self._dir = state_dir
        self._dir.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.Lock()
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

    # The lockout lives in the data directory, so that a reload or another server process shares it.
    @contextmanager
    def _attempts(self) -> Iterator[dict]:
        path = self._dir / "admin-attempts.json"
        with self._lock, open(self._dir / "admin-attempts.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = json.loads(path.read_text())
            except FileNotFoundError:
                state = {}
            before = json.dumps(state, sort_keys=True)
            yield state
            if json.dumps(state, sort_keys=True) != before:
                _write_atomically(path, json.dumps(state))

    def locked_for(self, client: str = "") -> float:
        """Seconds until the form unlocks for this client; 0 when it is open."""
        with self._attempts() as state:
            return max(0.0, state.get(client, {}).get("locked_until", 0.0) - self._clock())

    def failures(self, client: str = "") -> int:
        with self._attempts() as state:
            return state.get(client, {}).get("failures", 0)

    def check(self, password: str, client: str = "") -> bool:
        """True for the right password; counts a client's failures and locks it after MAX_ATTEMPTS."""
        with self._attempts() as state:
            now = self._clock()
            # Forget clients whose lockout is long over, so the file stays small.
            for key in [k for k, v in state.items() if v.get("locked_until", 0) and v["locked_until"] < now - 86400]:
                del state[key]
            entry = state.get(client, {"failures": 0, "locked_until": 0.0})
            if entry["locked_until"] > now:
                return False
            ok = hmac.compare_digest(_derive(password, self._salt), self._hash)
            if ok:
                state.pop(client, None)
                return True
            entry = {"failures": entry["failures"] + 1, "locked_until": 0.0}
            if entry["failures"] >= MAX_ATTEMPTS:
                entry = {"failures": 0, "locked_until": now + LOCKOUT_SECONDS}
            state[client] = entry
            return False
