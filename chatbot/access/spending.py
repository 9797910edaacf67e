"""Spending limits of the API backends, kept in the Redis that holds the conversations.

A backend is metered when it needs a key or is not local (OpenAI, Anthropic, an Ollama server).
Three kinds of limit, each switched off by 0:
- requests per minute per client (the signed-in user, else the browser session), a moving window
  kept by `limits`;
- tokens per conversation;
- tokens, and the cost estimated from per-model prices, per day (UTC) for the whole desk.

Every API call is held against the limits before it is sent (`reserve`: its estimated tokens and
cost, checked and held in one Lua script, so concurrent calls cannot all pass at 97% of a limit),
then settled with the tokens it really used (`settle`), or released when it sent nothing
(`release`). A call is admitted while spent plus held stays under each limit, so a limit is
overshot by at most the last admitted call.

Keys: chatbot:spend:day:YYYY-MM-DD  hash: requests, tokens, input_tokens, output_tokens, cost,
                                    priced_tokens, and `tokens:MODEL`, `cost:MODEL` per model
      chatbot:spend:conv:ID         hash: tokens, cost (expires with the conversation)
      chatbot:spend:holds           hash: hold id -> "tokens cost expires conversation" (calls in flight)
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import redis
from limits import RateLimitItemPerMinute

from chatbot.store.server import as_text
from chatbot.access.spend_scripts import RESERVE
from chatbot.access.throttle import MovingWindows
from common.errors import ConfigurationError, SpendingLimitReached
from common.timefmt import in_words

PREFIX = "chatbot:spend"
HOLDS = f"{PREFIX}:holds"
KEEP_DAYS = 40
# A hold not settled after this long (its process died mid-call) stops counting. Ten minutes is far
# longer than a reply streams; a call that does outlast it is still recorded in full when it ends.
HOLD_SECONDS = 600


def is_metered(backend_class: Any) -> bool:
    """Whether a backend (class or instance) spends money: it needs a key, or runs elsewhere."""
    return bool(getattr(backend_class, "needs_key", False) or not getattr(backend_class, "is_local", False))


@dataclass(frozen=True)
class Price:
    """Dollars per million tokens."""

    input: float
    output: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


def parse_prices(value: Any) -> dict[str, Price]:
    """Prices by model: "gpt-4o-mini=0.15/0.60, claude-haiku=1/5", or a mapping of [input, output] pairs."""
    if not value:
        return {}
    if isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        pairs = []
        for item in str(value).replace(";", ",").split(","):
            if item.strip():
                model, _, price = item.partition("=")
                pairs.append((model, price.split("/")))
    prices = {}
    for model, price in pairs:
        try:
            if isinstance(price, Mapping):
                price = [price["input"], price["output"]]
            input_price, output_price = (float(p) for p in price)
        except (KeyError, TypeError, ValueError):
            raise ConfigurationError(
                f"CHATBOT_MODEL_PRICES: {model.strip()!r} needs input/output dollars per million tokens, "
                "e.g. gpt-4o-mini=0.15/0.60") from None
        prices[model.strip()] = Price(input_price, output_price)
    return prices


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int = 20
    conversation_tokens: int = 60_000
    daily_tokens: int = 2_000_000
    daily_cost: float = 0.0
    prices: Mapping[str, Price] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Any) -> "Limits":
        return cls(settings.requests_per_minute, settings.conversation_token_limit, settings.daily_token_limit,
                   settings.daily_cost_limit, parse_prices(settings.model_prices))

    def price(self, model: str) -> Price | None:
        """The model's price: its own, else that of the longest name it starts with; None if unpriced."""
        if model in self.prices:
            return self.prices[model]
        prefixes = [name for name in self.prices if name and model.startswith(name)]
        return self.prices[max(prefixes, key=len)] if prefixes else None


@dataclass(frozen=True)
class Verdict:
    """Whether a metered turn may run now; if not, which limit stops it and when that resets."""

    allowed: bool = True
    limit: str = ""  # "requests", "conversation", "daily_tokens", "daily_cost" or "unavailable"
    used: float = 0
    cap: float = 0
    resets_in: float | None = None  # seconds; None for a conversation's budget, which does not reset

    @property
    def message(self) -> str:
        if self.allowed:
            return ""
        when = in_words(self.resets_in or 0)
        return {
            "requests": f"Limit of {self.cap:,.0f} requests a minute to the API backends reached; "
                        f"the next one is possible in {when}.",
            "conversation": f"This conversation has used {self.used:,.0f} of its {self.cap:,.0f} tokens on the "
                            "API backends; a new conversation starts a fresh budget.",
            "daily_tokens": f"Today's limit of {self.cap:,.0f} tokens on the API backends is reached "
                            f"({self.used:,.0f} used); it resets at midnight UTC, in {when}.",
            "daily_cost": f"Today's spending limit of ${self.cap:,.2f} on the API backends is reached "
                          f"(about ${self.used:,.2f} spent); it resets at midnight UTC, in {when}.",
            "unavailable": "The spending limits cannot be checked: the conversation store is unreachable.",
        }[self.limit]


@dataclass(frozen=True)
class Hold:
    """An API call's estimate, held against the limits until the call is settled or released."""

    id: str
    conversation_id: str
    model: str
    tokens: int
    cost: float


def _number(raw: Any) -> float:
    return float(as_text(raw)) if raw is not None else 0.0


def refused(verdict: Verdict) -> SpendingLimitReached:
    """The error an API call stopped by `verdict` raises: its message, which limit, when it resets."""
    return SpendingLimitReached(verdict.message, limit=verdict.limit, retry_after=verdict.resets_in)


class Spending:
    """Checks the limits before a metered turn and records its tokens after it."""

    def __init__(self, client: Callable[[], redis.Redis], limits: Limits, *, conversation_ttl: int | None = None,
                 clock: Callable[[], float] = time.time):
        self._client = client
        self.limits = limits
        self._conversation_ttl = conversation_ttl
        self._clock = clock
        self._windows = MovingWindows(client)
        self.per_minute = RateLimitItemPerMinute(max(1, limits.requests_per_minute))

    # -- keys and times
    def _day(self, at: float | None = None) -> str:
        return datetime.fromtimestamp(self._clock() if at is None else at, timezone.utc).strftime("%Y-%m-%d")

    def _day_key(self, day: str) -> str:
        return f"{PREFIX}:day:{day}"

    @staticmethod
    def _conversation_key(conversation_id: str) -> str:
        return f"{PREFIX}:conv:{conversation_id}"

    def seconds_to_midnight(self) -> float:
        now = datetime.fromtimestamp(self._clock(), timezone.utc)
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return (midnight - now).total_seconds()

    # -- before a turn
    def check(self, client_id: str, conversation_id: str = "") -> Verdict:
        """Whether `client_id` may run a metered turn in `conversation_id` now; counts nothing."""
        limits, today = self.limits, self.today()
        if limits.daily_cost and today["cost"] >= limits.daily_cost:
            return Verdict(False, "daily_cost", today["cost"], limits.daily_cost, self.seconds_to_midnight())
        if limits.daily_tokens and today["tokens"] >= limits.daily_tokens:
            return Verdict(False, "daily_tokens", today["tokens"], limits.daily_tokens, self.seconds_to_midnight())
        if limits.conversation_tokens and conversation_id:
            used = self.conversation(conversation_id)["tokens"]
            if used >= limits.conversation_tokens:
                return Verdict(False, "conversation", used, limits.conversation_tokens)
        if limits.requests_per_minute and not self._windows.limiter.test(self.per_minute, "chat", client_id):
            return Verdict(False, "requests", limits.requests_per_minute, limits.requests_per_minute,
                           self._windows.seconds_to_reset(self.per_minute, "chat", client_id))
        return Verdict()

    def reserve(self, client_id: str, conversation_id: str, model: str, input_tokens: int,
                output_tokens: int) -> Hold:
        """Hold an API call's estimate (tokens in and out) unless a limit is reached; counts its request.

        Raises SpendingLimitReached, with the limit's message and when it resets, and holds nothing
        then; redis.RedisError when the store cannot be reached.
        """
        limits, model = self.limits, model or "default"
        price = limits.price(model)
        hold = Hold(secrets.token_hex(8), conversation_id, model, int(input_tokens) + int(output_tokens),
                    price.cost(input_tokens, output_tokens) if price else 0.0)
        client = self._client()
        limit, used = client.register_script(RESERVE)(
            keys=[self._day_key(self._day()), self._conversation_key(conversation_id), HOLDS],
            args=[repr(self._clock()), hold.id, hold.tokens, repr(hold.cost), conversation_id, limits.daily_tokens,
                  repr(float(limits.daily_cost)), limits.conversation_tokens, HOLD_SECONDS, KEEP_DAYS * 86400])
        limit = as_text(limit)
        if limit:
            cap = {"daily_cost": limits.daily_cost, "daily_tokens": limits.daily_tokens,
                   "conversation": limits.conversation_tokens}[limit]
            resets = None if limit == "conversation" else self.seconds_to_midnight()
            raise refused(Verdict(False, limit, _number(used), cap, resets))
        if limits.requests_per_minute and not self._windows.limiter.hit(self.per_minute, "chat", client_id):
            self.release(hold, counted=True)
            raise refused(Verdict(False, "requests", limits.requests_per_minute, limits.requests_per_minute,
                                  self._windows.seconds_to_reset(self.per_minute, "chat", client_id)))
        return hold

    def settle(self, hold: Hold, input_tokens: int, output_tokens: int) -> float | None:
        """End a held call with the tokens it used: the hold goes, the tokens (and cost) are recorded."""
        return self.record(hold.conversation_id, hold.model, input_tokens, output_tokens, hold_id=hold.id)

    def release(self, hold: Hold, counted: bool = False) -> None:
        """End a held call that spent nothing (it failed before the provider answered); `counted`: it was
        refused by the requests-a-minute limit after the hold, so its request is taken back too."""
        pipe = self._client().pipeline(transaction=True)
        pipe.hdel(HOLDS, hold.id)
        if counted:
            pipe.hincrby(self._day_key(self._day()), "requests", -1)
        pipe.execute()

    def count_request(self, client_id: str) -> None:
        """A metered turn starts: one request against the client's minute and today's count."""
        if self.limits.requests_per_minute:
            self._windows.limiter.hit(self.per_minute, "chat", client_id)
        self._count_day_request()

    def _count_day_request(self) -> None:
        key = self._day_key(self._day())
        pipe = self._client().pipeline(transaction=True)
        pipe.hincrby(key, "requests", 1)
        pipe.expire(key, KEEP_DAYS * 86400)
        pipe.execute()

    def requests_this_minute(self, client_id: str) -> int:
        stats = self._windows.limiter.get_window_stats(self.per_minute, "chat", client_id)
        return self.per_minute.amount - stats.remaining

    # -- after a turn
    def record(self, conversation_id: str, model: str, input_tokens: int, output_tokens: int,
               hold_id: str = "") -> float | None:
        """Add a call's tokens (and estimated cost) to today and its conversation, ending its hold in the
        same transaction; returns the cost, if priced."""
        tokens = int(input_tokens or 0) + int(output_tokens or 0)
        model = model or "default"
        price = self.limits.price(model)
        cost = price.cost(input_tokens or 0, output_tokens or 0) if price else None
        day_key = self._day_key(self._day())
        pipe = self._client().pipeline(transaction=True)
        if hold_id:
            pipe.hdel(HOLDS, hold_id)
        if not tokens:
            pipe.execute()
            return None
        for name, value in (("tokens", tokens), ("input_tokens", input_tokens or 0),
                            ("output_tokens", output_tokens or 0), (f"tokens:{model}", tokens)):
            pipe.hincrby(day_key, name, value)
        if cost is not None:
            pipe.hincrby(day_key, "priced_tokens", tokens)
            pipe.hincrbyfloat(day_key, "cost", cost)
            pipe.hincrbyfloat(day_key, f"cost:{model}", cost)
        pipe.expire(day_key, KEEP_DAYS * 86400)
        if conversation_id:
            key = self._conversation_key(conversation_id)
            pipe.hincrby(key, "tokens", tokens)
            pipe.hincrbyfloat(key, "cost", cost or 0.0)
            if self._conversation_ttl:
                pipe.expire(key, self._conversation_ttl)
        pipe.execute()
        return cost

    # -- reading
    def day(self, day: str) -> dict:
        """One UTC day's spend: totals, and tokens and cost per model."""
        raw = {as_text(k): v for k, v in self._client().hgetall(self._day_key(day)).items()}
        totals = {name: _number(raw.get(name))
                  for name in ("requests", "tokens", "input_tokens", "output_tokens", "cost", "priced_tokens")}
        models: dict[str, dict] = {}
        for name, value in raw.items():
            kind, _, model = name.partition(":")
            if model and kind in ("tokens", "cost"):
                models.setdefault(model, {"tokens": 0.0, "cost": 0.0})[kind] = _number(value)
        return {"day": day, **totals, "models": models}

    def today(self) -> dict:
        return self.day(self._day())

    def days(self, count: int = 7) -> list[dict]:
        """The last `count` UTC days, oldest first, today last."""
        now = self._clock()
        return [self.day(self._day(now - back * 86400)) for back in range(count - 1, -1, -1)]

    def conversation(self, conversation_id: str) -> dict:
        raw = {as_text(k): v for k, v in self._client().hgetall(self._conversation_key(conversation_id)).items()}
        return {"tokens": _number(raw.get("tokens")), "cost": _number(raw.get("cost"))}
