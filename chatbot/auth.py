"""The admin password: configured or generated once, stored only as a hash, with a lockout."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sys
import threading
import time
from pathlib import Path

MAX_ATTEMPTS = 5
LOCKOUT_SECONDS = 300
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def _derive(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)


class AdminAuth:
    """Checks the admin password in constant time; five wrong attempts lock it for a while."""

    def __init__(self, state_dir: Path, configured_password: str = "", clock=time.time):
        self._dir = state_dir
        self._dir.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.Lock()
        self._salt = secrets.token_bytes(16)
        if configured_password:
            self._hash = _derive(configured_password, self._salt)
            self.generated = False
        else:
            self._salt, self._hash, self.generated = self._load_or_generate()

    def _load_or_generate(self) -> tuple[bytes, bytes, bool]:
        path = self._dir / "admin-password.json"
        if path.exists():
            data = json.loads(path.read_text())
            return bytes.fromhex(data["salt"]), bytes.fromhex(data["hash"]), True
        password = secrets.token_urlsafe(12)
        salt = secrets.token_bytes(16)
        digest = _derive(password, salt)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"salt": salt.hex(), "hash": digest.hex(), "created": time.time()}))
        os.chmod(tmp, 0o600)
        tmp.replace(path)
        # Shown once, on the server console only; only the hash is kept.
        print(
            f"\n  No admin password is configured. Generated one for this data directory:\n\n"
            f"      {password}\n\n  Set admin_password in .streamlit/secrets.toml (or CHATBOT_ADMIN_PASSWORD) to choose your own.\n",
            file=sys.stderr, flush=True,
        )
        return salt, digest, True

    # The lockout lives in the data directory so that a page reload does not reset it.
    def _attempts_path(self) -> Path:
        return self._dir / "admin-attempts.json"

    def _attempts(self) -> dict:
        try:
            return json.loads(self._attempts_path().read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"failures": 0, "locked_until": 0.0}

    def locked_for(self) -> float:
        """Seconds until the form unlocks; 0 when it is open."""
        return max(0.0, self._attempts()["locked_until"] - self._clock())

    def check(self, password: str) -> bool:
        """True for the right password; counts failures and locks after MAX_ATTEMPTS."""
        with self._lock:
            state = self._attempts()
            if state["locked_until"] > self._clock():
                return False
            ok = hmac.compare_digest(_derive(password, self._salt), self._hash)
            state = {"failures": 0, "locked_until": 0.0} if ok else {
                "failures": state["failures"] + 1, "locked_until": state["locked_until"]
            }
            if state["failures"] >= MAX_ATTEMPTS:
                state = {"failures": 0, "locked_until": self._clock() + LOCKOUT_SECONDS}
            self._attempts_path().write_text(json.dumps(state))
            return ok

    def failures(self) -> int:
        return self._attempts()["failures"]
