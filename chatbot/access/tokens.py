"""Signed, expiring sign-in tokens for a browser cookie, so that a sign-in survives a page refresh.

A token is signed with a key kept in the data directory (itsdangerous), carries the time it was
issued, and names a session recorded in Redis: signing out deletes that record, so a copied
cookie stops working at once even before it expires.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Callable

import redis
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from chatbot.access.throttle import PREFIX

SALT = "chatbot-sign-in"


def load_or_create_key(state_dir: Path) -> bytes:
    """The signing key of this data directory, generated once (mode 0600); every process shares it."""
    path = state_dir / "session-key"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".session-key.", suffix=".tmp", dir=state_dir)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
        try:
            os.link(name, path)  # of two servers starting at once, exactly one key wins
        except FileExistsError:
            pass
        finally:
            os.unlink(name)
    return bytes.fromhex(path.read_text().strip())


class SessionTokens:
    """Issue, verify and revoke sign-in tokens; `lifetime` seconds after issue a token is refused."""

    def __init__(self, key: bytes, client: Callable[[], redis.Redis], lifetime: float,
                 clock: Callable[[], float] = time.time):
        signer = type("ClockSigner", (TimestampSigner,), {"get_timestamp": lambda _self: int(clock())})
        self._serializer = URLSafeTimedSerializer(key, salt=SALT, signer=signer)
        self._client = client
        self.lifetime = lifetime
        self._clock = clock

    @staticmethod
    def _key(sid: str) -> str:
        return f"{PREFIX}:session:{sid}"

    def issue(self, user: str, via: str) -> tuple[str, str]:
        """A new token for `user` (signed in `via` "password" or "oidc") and the id of its session."""
        sid = secrets.token_urlsafe(18)
        self._client().set(self._key(sid), user, ex=max(1, int(self.lifetime)))
        return self._serializer.dumps({"user": user, "via": via, "sid": sid}), sid

    def verify(self, token: str) -> dict | None:
        """The token's {"user", "via", "sid", "issued"} if it is genuine, unexpired and not revoked."""
        if not token:
            return None
        try:
            payload, signed_at = self._serializer.loads(token, max_age=self.lifetime, return_timestamp=True)
        except (BadSignature, SignatureExpired):
            return None
        if not isinstance(payload, dict) or not {"user", "via", "sid"} <= payload.keys():
            return None
        if not self._client().exists(self._key(payload["sid"])):
            return None  # signed out since
        return {**payload, "issued": signed_at.timestamp()}

    def is_active(self, sid: str) -> bool:
        """Whether the sign-in `sid` still stands: not signed out (in any tab or browser) nor expired.

        Every tab and browser of one sign-in shares its `sid`, so this is checked on every run of a
        page and before every admin action. Raises redis.RedisError when the store cannot be reached.
        """
        return bool(sid) and bool(self._client().exists(self._key(sid)))

    def end_account(self, user: str, keep: float = 31 * 86400) -> None:
        """Record that `user` signed out (of an account sign-in, OpenID Connect): every sign-in of theirs
        made before now ends, in every tab and browser. Kept `keep` seconds, longer than such a sign-in lasts."""
        self._client().set(f"{PREFIX}:ended:{user}", repr(self._clock()), ex=int(keep))

    def account_ended(self, user: str) -> float:
        """When `user` last signed out of their account sign-in (epoch seconds); 0 if not recorded."""
        raw = self._client().get(f"{PREFIX}:ended:{user}")
        return float(raw) if raw else 0.0

    def revoke(self, sid: str) -> None:
        if sid:
            self._client().delete(self._key(sid))
