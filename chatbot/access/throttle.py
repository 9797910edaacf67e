"""Slowing down password guessing, in the Redis that holds the conversations (shared by every process).

Two limits, neither keyed on anything a request can claim about itself (no address, no header):
- per client (a browser session, identified on the server): a few free tries, then a delay that
  doubles with every further wrong password, up to a ceiling;
- for everyone: at most `global_failures` wrong passwords in a moving window. This caps how fast
  a guesser who opens session after session can go. It pauses only the password form: admins who
  are signed in already, and admins who sign in with OpenID Connect, are not affected.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import redis
from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

PREFIX = "chatbot:signin"
LIMITS_PREFIX = "chatbot:limits"
FORGET_AFTER = 86400  # a client's failures are forgotten a day after its last one


class MovingWindows:
    """`limits`' moving-window limiter over the app's Redis client, rebuilt if the store reconnects."""

    def __init__(self, client: Callable[[], redis.Redis]):
        self._client = client
        self._bound: redis.Redis | None = None
        self._limiter: MovingWindowRateLimiter | None = None

    @property
    def limiter(self) -> MovingWindowRateLimiter:
        client = self._client()
        if client is not self._bound or self._limiter is None:
            storage = RedisStorage("redis://", connection_pool=client.connection_pool, key_prefix=LIMITS_PREFIX)
            self._limiter, self._bound = MovingWindowRateLimiter(storage), client
        return self._limiter

    def seconds_to_reset(self, item: RateLimitItemPerSecond, *identifiers: str) -> float:
        stats = self.limiter.get_window_stats(item, *identifiers)
        return max(0.0, stats.reset_time - time.time())


@dataclass(frozen=True)
class Wait:
    """How long before a password is checked again, and for whom: "client", "everyone" or ""."""

    seconds: float = 0.0
    scope: str = ""


class SignInThrottle:
    """An exponential delay per client after a few wrong passwords, and a cap for everyone."""

    def __init__(self, client: Callable[[], redis.Redis], *, free_attempts: int = 3, base_delay: float = 2.0,
                 max_delay: float = 900.0, global_failures: int = 20, global_window: int = 900,
                 clock: Callable[[], float] = time.time):
        self._client = client
        self.free_attempts = free_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.everyone = RateLimitItemPerSecond(global_failures, global_window)
        self._windows = MovingWindows(client)
        self._clock = clock

    @property
    def limiter(self) -> MovingWindowRateLimiter:
        return self._windows.limiter

    @staticmethod
    def _key(who: str) -> str:
        return f"{PREFIX}:client:{who}"

    def delay_after(self, failures: int) -> float:
        """The wait imposed after `failures` wrong passwords in a row: 0, then 2, 4, 8… seconds."""
        if failures < self.free_attempts:
            return 0.0
        return min(self.max_delay, self.base_delay * 2 ** (failures - self.free_attempts))

    def wait(self, who: str) -> Wait:
        """The wait before `who` may try a password; zero when the form is open to them."""
        until = self._client().hget(self._key(who), "until")
        mine = max(0.0, float(until) - self._clock()) if until else 0.0
        if mine:
            return Wait(mine, "client")
        if not self.limiter.test(self.everyone, "failures"):
            return Wait(max(1.0, self._windows.seconds_to_reset(self.everyone, "failures")), "everyone")
        return Wait()

    def failures(self, who: str) -> int:
        return int(self._client().hget(self._key(who), "failures") or 0)

    def failed(self, who: str) -> Wait:
        """Count a wrong password from `who`; returns the wait it now has before the next try."""
        key = self._key(who)
        failures = int(self._client().hincrby(key, "failures", 1))
        delay = self.delay_after(failures)
        pipe = self._client().pipeline(transaction=True)
        pipe.hset(key, "until", self._clock() + delay)
        pipe.expire(key, int(max(delay, FORGET_AFTER)))
        pipe.execute()
        self.limiter.hit(self.everyone, "failures")
        if delay:
            return Wait(delay, "client")
        return self.wait(who)

    def succeeded(self, who: str) -> None:
        self._client().delete(self._key(who))
