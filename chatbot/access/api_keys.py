"""API keys of the HTTP API: made and revoked by admins, stored hashed in the conversations' Redis.

A key is `desk_<key id>_<secret>`: the id (8 hex) finds its record, the secret is 256 bits from
`secrets.token_urlsafe(32)`. Only the SHA-256 of the whole key is stored (hashlib), compared with
`hmac.compare_digest`. Not bcrypt or argon2: those slow hashes protect low-entropy passwords
against guessing; a 256-bit random secret cannot be guessed however fast the hash, and a slow
hash would add 50-250 ms to every request (the API's overhead goal is 5 ms). This is how
GitHub and others store their tokens.

Each key has a role (agent or admin) and its own limits, switched off by 0: requests a minute
(a moving window kept by `limits`) and tokens a day (UTC). A turn's backend call is held against
the key's tokens before it is sent and settled after, as the desk's spending limits are
(chatbot/access/spending.py, the same Lua script): concurrent turns cannot all pass at 97% of a
key's tokens; the limit is overshot by at most the last admitted call.

Keys: chatbot:apikey:ID                hash: name, role, hash, requests_per_minute, daily_tokens,
                                       created, revoked, last_used
      chatbot:apikeys                  set of key ids
      chatbot:apikey:ID:day:DAY        hash: tokens (used that UTC day), requests (backend calls held);
                                       expires after 2 days
      chatbot:apikey:ID:holds          hash: hold id -> "tokens cost expires" (calls in flight)
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Callable

import redis
import redis.asyncio
from limits import RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindow

from chatbot.access.roles import ADMIN, AGENT
from chatbot.access.spend_scripts import RESERVE
from chatbot.access.throttle import MovingWindows
from chatbot.store.server import as_text
from common.errors import ChatbotError, SpendingLimitReached

PREFIX = "chatbot:apikey"
INDEX = "chatbot:apikeys"
KEY_FORM = re.compile(r"desk_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")
ID_FORM = re.compile(r"[0-9a-f]{8}")
ROLES = (AGENT, ADMIN)
DAY_SECONDS_KEPT = 2 * 86400
# A hold not settled after this long (its process died mid-call) stops counting (as spending.HOLD_SECONDS).
HOLD_SECONDS = 600


class ApiKeyError(ChatbotError):
    """An API key that cannot be made as asked (a bad role or limit), or is unknown."""


class KeyLimitReached(SpendingLimitReached):
    """A key's own limit is reached: `limit` is "requests" or "daily_tokens"; `retry_after` in seconds.

    A SpendingLimitReached: raised when a backend call is held (`reserve_tokens`), it ends the reply
    as any call a limit stopped does (stored as failed, nothing sent), and a classification or a
    summary falls back as it does then."""

    def __init__(self, message: str, limit: str, retry_after: float):
        super().__init__(message, limit=limit, retry_after=retry_after)


@dataclass(frozen=True)
class ApiKey:
    """One key's record (never its secret): who it is for, its role and its limits (0: none)."""

    key_id: str
    name: str
    role: str
    requests_per_minute: int
    daily_tokens: int
    created: float
    revoked: float = 0.0
    # Tokens used today when the key was read by `verify` (not stored in the record).
    used_today: int = field(default=0, compare=False)

    @property
    def client_id(self) -> str:
        """Who the spending limits count this key as."""
        return f"api:{self.key_id}"

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("used_today")
        return data


def hash_key(key: str) -> str:
    """The stored form of a key: SHA-256, hex (64 characters)."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    """Create, list, revoke and check API keys, and keep each key's own limits."""

    def __init__(self, client: Callable[[], redis.Redis], clock: Callable[[], float] = time.time):
        self._client = client
        self._clock = clock
        self._windows = MovingWindows(client)

    def create(self, name: str, role: str = AGENT, *, requests_per_minute: int = 60,
               daily_tokens: int = 200_000) -> tuple[ApiKey, str]:
        """A new key: its record, and the key itself (shown once; only its hash is kept)."""
        name = " ".join(name.split())[:80]
        if not name:
            raise ApiKeyError("Name the key (who or what will use it).")
        if role not in ROLES:
            raise ApiKeyError(f"Unknown role {role!r}: choose {' or '.join(ROLES)}.")
        if requests_per_minute < 0 or daily_tokens < 0:
            raise ApiKeyError("Limits are 0 (none) or more.")
        key_id = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        key = f"desk_{key_id}_{secret}"
        record = ApiKey(key_id, name, role, int(requests_per_minute), int(daily_tokens), self._clock())
        pipe = self._client().pipeline(transaction=True)
        pipe.hset(f"{PREFIX}:{key_id}", mapping={**{k: str(v) for k, v in record.to_dict().items()},
                                                 "hash": hash_key(key)})
        pipe.sadd(INDEX, key_id)
        pipe.execute()
        return record, key

    def _read(self, raw: dict) -> ApiKey:
        data = {as_text(k): as_text(v) for k, v in raw.items()}
        return ApiKey(data["key_id"], data["name"], data["role"], int(data["requests_per_minute"]),
                      int(data["daily_tokens"]), float(data["created"]), float(data.get("revoked") or 0))

    def get(self, key_id: str) -> ApiKey:
        """The key with this id (or the key itself, pasted whole); ApiKeyError if there is none."""
        whole = KEY_FORM.fullmatch(key_id.strip())
        key_id = whole.group(1) if whole else key_id.strip()
        if not ID_FORM.fullmatch(key_id):  # never echoed: it may be a secret pasted with a typo
            raise ApiKeyError("That is not a key id: give the 8-character id `api-keys list` shows.")
        raw = self._client().hgetall(f"{PREFIX}:{key_id}")
        if not raw:
            raise ApiKeyError(f"No API key {key_id}.")
        return self._read(raw)

    def list(self) -> list[ApiKey]:
        """Every key, newest first, revoked ones included (marked)."""
        ids = sorted(as_text(k) for k in self._client().smembers(INDEX))
        pipe = self._client().pipeline(transaction=False)
        for key_id in ids:
            pipe.hgetall(f"{PREFIX}:{key_id}")
        return sorted((self._read(raw) for raw in pipe.execute() if raw), key=lambda k: -k.created)

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key at once: every later request with it is refused. ApiKeyError if there is none.

        A key revoked already stays as it is, so its record keeps when it was revoked first.
        """
        record = self.get(key_id)
        if record.revoked:
            return record
        self._client().hset(f"{PREFIX}:{record.key_id}", "revoked", str(self._clock()))
        return self.get(record.key_id)

    def _names(self, key: str) -> tuple[str, str] | None:
        """The Redis keys of a key's record and of its tokens today; None for a malformed key."""
        match = KEY_FORM.fullmatch(key.strip())
        if not match:
            return None
        return f"{PREFIX}:{match.group(1)}", self._day_name(match.group(1))

    def _accepted(self, key: str, raw: dict, used) -> ApiKey | None:
        """The live record read for `key` (with today's tokens), or None when it is unknown, not this key or revoked."""
        if not raw:
            return None
        stored = as_text(raw.get(b"hash", raw.get("hash", b"")))
        if not hmac.compare_digest(stored, hash_key(key.strip())):
            return None
        record = replace(self._read(raw), used_today=int(used or 0))
        return None if record.revoked else record

    def verify(self, key: str) -> ApiKey | None:
        """The live key's record, or None for an unknown, malformed or revoked key."""
        names = self._names(key)
        if names is None:
            return None
        # One round trip for the record and today's tokens: every API request pays for this.
        pipe = self._client().pipeline(transaction=False)
        pipe.hgetall(names[0])
        pipe.hget(names[1], "tokens")
        return self._accepted(key, *pipe.execute())

    async def verify_async(self, key: str, client: redis.asyncio.Redis) -> ApiKey | None:
        """`verify` through an asyncio client (the HTTP API checks keys on its event loop)."""
        names = self._names(key)
        if names is None:
            return None
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(names[0])
        pipe.hget(names[1], "tokens")
        return self._accepted(key, *await pipe.execute())

    # -- the key's own limits
    def _day(self) -> str:
        return datetime.fromtimestamp(self._clock(), timezone.utc).strftime("%Y-%m-%d")

    def _day_name(self, key_id: str) -> str:
        return f"{PREFIX}:{key_id}:day:{self._day()}"

    def tokens_today(self, key: ApiKey) -> int:
        return int(self._client().hget(self._day_name(key.key_id), "tokens") or 0)

    def check_tokens(self, key: ApiKey) -> None:
        """KeyLimitReached (with the seconds to midnight UTC) when the key's tokens for today are used up,
        as `verify` read them: a refusal before the turn starts. `reserve_tokens` is the check that
        holds against concurrent turns."""
        if key.daily_tokens and key.used_today >= key.daily_tokens:
            raise self._spent(key)

    def _spent(self, key: ApiKey) -> KeyLimitReached:
        now = datetime.fromtimestamp(self._clock(), timezone.utc)
        left = 86400 - (now.hour * 3600 + now.minute * 60 + now.second)
        return KeyLimitReached(f"This key has used its {key.daily_tokens:,} tokens for today; "
                               "it resets at midnight UTC.", "daily_tokens", float(left))

    def reserve_tokens(self, key: ApiKey, tokens: int) -> str:
        """Hold a backend call's estimated `tokens` against the key's tokens today; the hold's id.

        Checked and held in one Lua script (spend_scripts.RESERVE), so concurrent calls each see
        the holds of those admitted before them. Raises KeyLimitReached when what is used plus
        what is held reaches the key's daily tokens (holding nothing then); redis.RedisError
        when the store cannot be reached.
        """
        hold = secrets.token_hex(8)
        day = self._day_name(key.key_id)
        limit, _ = self._client().register_script(RESERVE)(
            keys=[day, day, f"{PREFIX}:{key.key_id}:holds"],
            args=[repr(self._clock()), hold, max(0, int(tokens)), "0", "", key.daily_tokens, "0", 0,
                  HOLD_SECONDS, DAY_SECONDS_KEPT])
        if as_text(limit):
            raise self._spent(key)
        return hold

    def settle_tokens(self, key: ApiKey, hold: str, tokens: int) -> None:
        """End a held call with the `tokens` (input plus output) it used: the hold goes, they are counted
        (0 for a call that sent nothing)."""
        day = self._day_name(key.key_id)
        pipe = self._client().pipeline(transaction=True)
        pipe.hdel(f"{PREFIX}:{key.key_id}:holds", hold)
        if tokens > 0:
            pipe.hincrby(day, "tokens", int(tokens))
            pipe.expire(day, DAY_SECONDS_KEPT)
        pipe.execute()

    def admit(self, key: ApiKey) -> None:
        """Count one request against the key's requests a minute; KeyLimitReached (with when to retry) over it."""
        if key.requests_per_minute:
            item = RateLimitItemPerMinute(key.requests_per_minute)
            if not self._windows.limiter.hit(item, "apikey", key.key_id):
                raise self._over(key, self._windows.seconds_to_reset(item, "apikey", key.key_id))

    async def admit_async(self, key: ApiKey, limiter: AsyncMovingWindow) -> None:
        """`admit` through `limits`' asyncio limiter, on the same Redis keys (see `async_windows`)."""
        if key.requests_per_minute:
            item = RateLimitItemPerMinute(key.requests_per_minute)
            if not await limiter.hit(item, "apikey", key.key_id):
                stats = await limiter.get_window_stats(item, "apikey", key.key_id)
                raise self._over(key, stats.reset_time - time.time())  # `limits` keeps wall-clock times

    @staticmethod
    def _over(key: ApiKey, seconds_to_reset: float) -> KeyLimitReached:
        wait = max(1.0, seconds_to_reset)
        return KeyLimitReached(f"This key's limit of {key.requests_per_minute} requests a minute is "
                               f"reached; try again in {wait:.0f} s.", "requests", wait)
