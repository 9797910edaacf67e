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
from common.types import ChatRequest, Usage

log = logging.getLogger(__name__)
OFFLINE_NOTE = " Replies come from the offline backend until then."


class KeyTokens(Backend):
    """Any backend, the tokens of each call counted against the API key's own daily tokens.

    The inner backend is already held to the desk's limits when it spends money, and its last
    piece is a Usage with locally counted tokens where the provider reported none.
    """

    def __init__(self, inner: Backend, desk: Desk, key: ApiKey):
        self.inner, self._desk, self._key = inner, desk, key
        self.record_ms = 0.0  # time spent counting the tokens in Redis: the API's work, not the core's
        for flag in ("name", "model", "can_classify", "can_summarise", "needs_key", "is_local", "model_choice"):
            setattr(self, flag, getattr(inner, flag))

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def stream(self, request: ChatRequest) -> Iterator[str | Usage]:
        usage: Usage | None = None
        try:
            for piece in self.inner.stream(request):
                if isinstance(piece, Usage):
                    usage = piece
                yield piece
        finally:
            if usage is not None:
                self._record(usage)

    def _record(self, usage: Usage) -> None:
        started = time.perf_counter()
        try:
            self._desk.keys.record_tokens(self._key, usage.input_tokens + usage.output_tokens)
        except redis.RedisError as exc:
            log.warning("Could not record a turn's tokens: %s", exc)
        self.record_ms += (time.perf_counter() - started) * 1000


def metered_backend(desk: Desk, key: ApiKey, conversation_id: str = "") -> tuple[KeyTokens, str]:
    """The backend for one turn of `key` in `conversation_id`, held to the limits, and why it is not the configured one.

    Raises KeyLimitReached when the key's own daily tokens are used up. Over a desk limit (as on
    the pages) the offline backend answers and the reason says which limit and when it resets; a
    limit reached between this check and the call raises SpendingLimitReached (answered 429).
    """
    desk.keys.check_tokens(key)
    answering = desk.services.answering(lambda: desk.backend, key.client_id, conversation_id,
                                        set_aside=desk.backend_error)
    reason = ""
    if answering.why == "unavailable":
        reason = answering.reason + OFFLINE_NOTE
        desk.metrics.fallbacks.labels("backend_unavailable").inc()
    elif answering.why == "limit":
        reason = answering.reason + OFFLINE_NOTE
        desk.metrics.fallbacks.labels(answering.limit or "limit").inc()
    return KeyTokens(answering.backend, desk, key), reason
