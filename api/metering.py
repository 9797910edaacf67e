"""The spending limits on the API's turns: the same limits as the pages (chatbot.access.spending), per key.

`metered_backend` is the one place the API picks and wraps the backend of a turn.
"""

from __future__ import annotations

import logging
from typing import Iterator

import redis

from api.desk import Desk
from backends.base import Backend
from chatbot.access.api_keys import ApiKey
from chatbot.access.spending import Verdict, is_metered
from common.types import ChatRequest, Usage

log = logging.getLogger(__name__)
OFFLINE_NOTE = " Replies come from the offline backend until then."


class MeteredBackend(Backend):
    """Any backend, its request counted when a reply starts and its tokens when it ends.

    Tokens count against the key's own daily tokens always, and against the desk's limits
    (`Spending`) when the backend is metered (an API backend).
    """

    def __init__(self, inner: Backend, desk: Desk, key: ApiKey, conversation_id: str):
        self.inner, self._desk, self._key, self._conversation_id = inner, desk, key, conversation_id
        self.name, self.model = inner.name, inner.model
        for flag in ("can_classify", "can_summarise", "needs_key", "is_local", "model_choice"):
            setattr(self, flag, getattr(inner, flag))
        self.spends = is_metered(inner)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def stream(self, request: ChatRequest) -> Iterator[str | Usage]:
        if self.spends:
            try:
                self._desk.spending.count_request(self._key.client_id)
            except redis.RedisError as exc:
                log.warning("Could not count a request: %s", exc)
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
        try:
            self._desk.keys.record_tokens(self._key, usage.input_tokens + usage.output_tokens)
            if self.spends:
                self._desk.spending.record(self._conversation_id, self.model, usage.input_tokens, usage.output_tokens)
        except redis.RedisError as exc:
            log.warning("Could not record a turn's tokens: %s", exc)


def metered_backend(desk: Desk, key: ApiKey, conversation_id: str = "") -> tuple[Backend, str]:
    """The backend for one turn of `key` in `conversation_id`, wrapped to count its spend, and why it is not the configured one.

    Raises KeyLimitReached when the key's own daily tokens are used up. Over a desk limit (as on
    the pages) the offline backend answers and the reason says which limit and when it resets.
    """
    desk.keys.check_tokens(key)
    backend, reason = desk.backend, ""
    if desk.backend_error:
        backend, reason = desk.offline, desk.backend_error + OFFLINE_NOTE
        desk.metrics.fallbacks.labels("backend_unavailable").inc()
    elif is_metered(backend):
        try:
            verdict = desk.spending.check(key.client_id, conversation_id)
        except redis.RedisError as exc:
            log.warning("Spending limits unavailable: %s", exc)
            verdict = Verdict(False, "unavailable")
        if not verdict.allowed:
            backend, reason = desk.offline, verdict.message + OFFLINE_NOTE
            desk.metrics.fallbacks.labels(verdict.limit).inc()
    return MeteredBackend(backend, desk, key, conversation_id), reason
