"""Slowing down password guessing, in the Redis that holds the conversations (shared by every process).

Two limits, neither keyed on anything a request can claim about itself (no address, no header):
- per client (a browser session, identified on the server): a few free tries, then a delay that
  doubles with every further wrong password, up to a ceiling;
- for everyone: at most `global_failures` wrong passwords in a moving window. This caps how fast
  a guesser who opens session after session can go. It pauses only the password form: admins who
  are signed in already, and admins who sign in with OpenID Connect, are not affected.

While the form is paused for everyone, each browser session that tries is given a turn, in order,
one every `global_window / global_failures` seconds (45 s by default), and is told when: its
password is checked when its turn comes, even if a guesser has filled the window again meanwhile,
and nobody without an earlier turn can take it. Without turns, a guesser trying again the moment
the window freed a place took it every time, and the admin who had waited the time they were told
was refused again, for as long as the guessing went on. Checks on a turn come on top of the cap:
at most twice `global_failures` in a window, still in order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import redis
import redis.asyncio
from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage as AsyncRedisStorage
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindow
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

PREFIX = "chatbot:signin"
LIMITS_PREFIX = "chatbot:limits"
FORGET_AFTER = 86400  # a client's failures are forgotten a day after its last one
TURNS = f"{PREFIX}:turns"  # the time of the next free turn while the form is paused
TURN_KEPT = 120  # seconds a turn stays open once it comes; missed, the client queues again

# Give `client` a turn to try while the form is paused for everyone, atomically across processes.
# KEYS: the client's hash, the queue's key (the time of the next free turn). ARGV: now, the time
# the window frees a place (0: it has room now), the spacing of turns, TURN_KEPT, the keys' TTL.
# Returns the seconds until the client may try (0: now).
TAKE_TURN = """
local now, reset_at, spacing, kept = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local turn = tonumber(redis.call('HGET', KEYS[1], 'turn') or '0')
if turn > 0 then
  if turn > now then return tostring(turn - now) end
  if now <= turn + kept then return '0' end
  redis.call('HDEL', KEYS[1], 'turn')
end
local next_turn = tonumber(redis.call('GET', KEYS[2]) or '0')
if reset_at == 0 and next_turn <= now then return '0' end
local at = math.max(now, reset_at, next_turn)
redis.call('SET', KEYS[2], string.format('%.3f', at + spacing), 'EX', tonumber(ARGV[5]))
redis.call('HSET', KEYS[1], 'turn', string.format('%.3f', at))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
return tostring(at - now)
"""


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


def async_moving_window(client: redis.asyncio.Redis) -> AsyncMovingWindow:
    """`limits`' asyncio moving-window limiter over `client`: the same Redis keys as `MovingWindows`,
    so a window counted by one is counted by the other."""
    storage = AsyncRedisStorage("async+redis://", implementation="redispy", connection_pool=client.connection_pool,
                                key_prefix=LIMITS_PREFIX)
    return AsyncMovingWindow(storage)


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
        """The wait before `who` may try a password; zero when the form is open to them. Reserves nothing."""
        until, turn = self._client().hmget(self._key(who), "until", "turn")
        now = self._clock()
        mine = max(0.0, float(until) - now) if until else 0.0
        if mine:
            return Wait(mine, "client")
        if turn and float(turn) + TURN_KEPT >= now:
            return Wait(max(0.0, float(turn) - now), "everyone" if float(turn) > now else "")
        if not self.limiter.test(self.everyone, "failures"):
            return Wait(max(1.0, self._windows.seconds_to_reset(self.everyone, "failures")), "everyone")
        return Wait()

    def admit(self, who: str) -> Wait:
        """Whether `who` may try a password now (zero wait); if not, how long, holding its turn when the
        form is paused for everyone, so that its password is checked when that time comes."""
        until = self._client().hget(self._key(who), "until")
        mine = max(0.0, float(until) - self._clock()) if until else 0.0
        if mine:
            return Wait(mine, "client")
        full = not self.limiter.test(self.everyone, "failures")
        now = self._clock()
        reset_at = now + max(1.0, self._windows.seconds_to_reset(self.everyone, "failures")) if full else 0
        spacing = self.everyone.get_expiry() / self.everyone.amount
        seconds = float(self._client().register_script(TAKE_TURN)(
            keys=[self._key(who), TURNS],
            args=[repr(now), repr(reset_at), repr(spacing), TURN_KEPT, FORGET_AFTER]))
        return Wait(seconds, "everyone") if seconds > 0 else Wait()

    def failures(self, who: str) -> int:
        return int(self._client().hget(self._key(who), "failures") or 0)

    def failed(self, who: str) -> Wait:
        """Count a wrong password from `who`; returns the wait it now has before the next try."""
        key = self._key(who)
        self.checked(who)
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

    def reopen(self) -> None:
        """Open the form to everyone at once: the cap's window and the queue of turns are emptied."""
        self.limiter.clear(self.everyone, "failures")
        self._client().delete(TURNS)

    def checked(self, who: str) -> None:
        """A password from `who` was checked: its turn, if it had one, is used."""
        self._client().hdel(self._key(who), "turn")

    def succeeded(self, who: str) -> None:
        self._client().delete(self._key(who))
