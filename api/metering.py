"""The spending limits on the API's turns: the pages' limits (chatbot.access.metering), plus each key's own.

`metered_backend` is the one place the API picks and wraps the backend of a turn. Which backend
answers, and the desk's limits around it, are decided by `Services.answering`, as for the pages
and the command line; the API adds only the key's own daily tokens on top.
"""

from __future__ import annotations

import logging
import time
from typing import Iterator

import redis

from api.desk import Desk
from backends.base import Backend
from chatbot.access.api_keys import ApiKey
from chatbot.access.spending import Verdict, is_metered, refused
from common.types import ChatRequest, Usage

log = logging.getLogger(__name__)
OFFLINE_NOTE = " Replies come from the offline backend until then."


class KeyTokens(Backend):
    """Any backend, each call held against the API key's own daily tokens before it is sent.

    The estimate (the prompt's tokens plus the reply's `max_tokens`) is held first, in one Lua
    script with the check (ApiKeys.reserve_tokens), so concurrent turns of one key cannot all slip
    under its limit; the call then settles with the tokens it used: the Usage the inner backend
    reports (already held to the desk's limits when it spends money, with locally counted tokens
    where the provider reported none), else the prompt and the pieces that arrived before it
    stopped. Raises KeyLimitReached, sending nothing, when the key's tokens are used up.
    """

    def __init__(self, inner: Backend, desk: Desk, key: ApiKey):
        self.inner, self._desk, self._key = inner, desk, key
        self.key_ms = 0.0  # time spent holding and counting the tokens in Redis: the API's work, not the core's
        for flag in ("name", "model", "can_classify", "can_summarise", "needs_key", "is_local", "model_choice"):
            setattr(self, flag, getattr(inner, flag))

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def stream(self, request: ChatRequest) -> Iterator[str | Usage]:
        input_tokens = self.inner.prompt_tokens(request)
        hold = self._reserve(input_tokens + request.max_tokens)
        usage: Usage | None = None
        pieces: list[str] = []
        try:
            for piece in self.inner.stream(request):
                if isinstance(piece, Usage):
                    usage = piece
                else:
                    pieces.append(piece)
                yield piece
        except BaseException:  # a backend error, or the reader stopped (a client that went away)
            self._settle(hold, input_tokens + self.inner.count_tokens("".join(pieces)) if pieces else 0)
            raise
        if usage is not None:
            self._settle(hold, usage.input_tokens + usage.output_tokens)
        else:
            self._settle(hold, input_tokens + self.inner.count_tokens("".join(pieces)))

    def _reserve(self, tokens: int) -> str:
        started = time.perf_counter()
        try:
            return self._desk.keys.reserve_tokens(self._key, tokens)
        except redis.RedisError as exc:  # no way to check: spend nothing rather than spend blind
            log.warning("A key's tokens could not be checked: %s", exc)
            raise refused(Verdict(False, "unavailable")) from exc
        finally:
            self.key_ms += (time.perf_counter() - started) * 1000

    def _settle(self, hold: str, tokens: int) -> None:
        started = time.perf_counter()
        try:
            self._desk.keys.settle_tokens(self._key, hold, tokens)
        except redis.RedisError as exc:  # the hold lapses by itself after api_keys.HOLD_SECONDS
            log.warning("Could not record a turn's tokens: %s", exc)
        self.key_ms += (time.perf_counter() - started) * 1000


def metered_backend(desk: Desk, key: ApiKey, conversation_id: str = "") -> tuple[Backend, str]:
    """The backend for one turn of `key` in `conversation_id`, held to the limits, and why it is not the configured one.

    A backend that spends money comes back as KeyTokens, its calls held against the key's own daily
    tokens; raises KeyLimitReached when they are used up. The offline and local backends spend
    nothing, and are limited by neither the desk's spending limits nor a key's tokens, as on the
    pages: they come back as they are. Over a desk limit the offline backend answers and the reason
    says which limit and when it resets; a limit reached between this check and the call raises
    SpendingLimitReached (answered 429).
    """
    answering = desk.services.answering(lambda: desk.backend, key.client_id, conversation_id,
                                        set_aside=desk.backend_error)
    reason = ""
    if answering.why == "unavailable":
        reason = answering.reason + OFFLINE_NOTE
        desk.metrics.fallbacks.labels("backend_unavailable").inc()
    elif answering.why == "limit":
        reason = answering.reason + OFFLINE_NOTE
        desk.metrics.fallbacks.labels(answering.limit or "limit").inc()
    if not is_metered(answering.backend):
        return answering.backend, reason
    desk.keys.check_tokens(key)
    return KeyTokens(answering.backend, desk, key), reason
