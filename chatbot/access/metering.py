"""Spending limits around the backend itself, and the one decision of which backend answers.

Every paid call goes through `Backend.stream` (`complete` streams too): the chat reply, the LLM
classifier's fallback, the running summary, the Prompts page's test reply, the command line's
`ask`. `MeteredBackend` wraps a backend at that one method, so no caller can skip a limit:

1. before the call it holds an estimate (the prompt's tokens, counted with the backend's own
   `count_tokens`, plus the request's `max_tokens`) against the limits, atomically in Redis
   (`Spending.reserve`); over a limit it raises SpendingLimitReached and sends nothing;
2. after the call it settles the hold with the tokens the provider reported; a stream that
   reports none (an OpenAI-compatible server that ignores `stream_options`) is metered from
   the tokens counted locally, never as 0;
3. a call that failed before any text is released; one cut off after text is settled with what
   was counted, as the provider bills for it.

`answering_backend` is where every front end (the pages, the command line, the HTTP API) learns
which backend answers a turn: the chosen one, held to the limits, or the offline one, and why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterator

import redis

from backends.base import Backend
from chatbot.access.spending import Hold, Spending, Verdict, is_metered, refused
from common.errors import ChatbotError
from common.types import ChatRequest, Usage

log = logging.getLogger(__name__)


class MeteredBackend(Backend):
    """A backend whose every call is held against the spending limits first and settled after.

    `client_id` is whom the requests-a-minute limit counts ("user:ana@example.com",
    "session:…", "cli:ana"); `conversation_id` whose token budget the calls spend ("" for calls
    outside a conversation, such as a Prompts page test reply).
    """

    def __init__(self, inner: Backend, spending: Spending, client_id: str, conversation_id: str = ""):
        self.inner = inner
        self.spending = spending
        self.client_id = client_id
        self.conversation_id = conversation_id
        # The inner backend's name and capabilities: callers ask these, never the class.
        for flag in ("name", "model", "can_classify", "can_summarise", "needs_key", "is_local", "model_choice"):
            setattr(self, flag, getattr(inner, flag))

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def stream(self, request: ChatRequest) -> Iterator[str | Usage]:
        """The inner backend's stream, held before its first piece and settled after its last.

        Raises SpendingLimitReached (sending nothing) when a limit is reached or the limits
        cannot be checked; the last piece is a Usage whose zero counts were replaced by local ones.
        """
        input_tokens = self.inner.prompt_tokens(request)
        hold = self._reserve(input_tokens, request.max_tokens)
        pieces: list[str] = []
        reported: Usage | None = None
        try:
            for piece in self.inner.stream(request):
                if isinstance(piece, Usage):
                    reported = piece
                    continue
                pieces.append(piece)
                yield piece
        except BaseException:  # a backend error, or the reader stopped (a rerun, a closed tab)
            if pieces:
                self._settle(hold, input_tokens, pieces, None)
            else:
                self._release(hold)
            raise
        yield self._settle(hold, input_tokens, pieces, reported)

    def _reserve(self, input_tokens: int, output_tokens: int) -> Hold:
        try:
            return self.spending.reserve(self.client_id, self.conversation_id, self.model, input_tokens,
                                         output_tokens)
        except redis.RedisError as exc:  # no way to check: spend nothing rather than spend blind
            log.warning("Spending limits unavailable: %s", exc)
            raise refused(Verdict(False, "unavailable")) from exc

    def _settle(self, hold: Hold, input_tokens: int, pieces: list[str], reported: Usage | None) -> Usage:
        usage = reported or Usage()
        used = Usage(usage.input_tokens or input_tokens,
                     usage.output_tokens or (self.inner.count_tokens("".join(pieces)) if pieces else 0),
                     usage.stop_reason)
        try:
            self.spending.settle(hold, used.input_tokens, used.output_tokens)
        except redis.RedisError as exc:  # the hold lapses by itself after HOLD_SECONDS
            log.warning("Could not record an API call's tokens: %s", exc)
        return used

    def _release(self, hold: Hold) -> None:
        try:
            self.spending.release(hold)
        except redis.RedisError as exc:
            log.warning("Could not release an API call's hold: %s", exc)


def metered_backend(backend: Backend, spending: Spending, client_id: str, conversation_id: str = "") -> Backend:
    """`backend` held to the spending limits for `client_id` in `conversation_id`: the one call a front
    end makes to meter a backend. A backend that spends nothing (offline, local) comes back as it is."""
    if isinstance(backend, MeteredBackend):
        backend = backend.inner
    if not is_metered(backend):
        return backend
    return MeteredBackend(backend, spending, client_id, conversation_id)


@dataclass(frozen=True)
class Answering:
    """Which backend answers a turn, and, when it is not the one chosen, why (`why`: "unavailable",
    the chosen backend cannot be built or was set aside; "limit", a spending limit is reached)."""

    backend: Backend
    reason: str = ""
    why: str = ""
    resets_in: float | None = None
    limit: str = ""  # the limit reached, when `why` is "limit" (see SpendingLimitReached.limit)

    @property
    def fell_back(self) -> bool:
        return bool(self.why)


def answering_backend(build: Callable[[], Backend], offline: Callable[[], Backend], spending: Spending,
                      client_id: str, conversation_id: str = "", set_aside: str = "") -> Answering:
    """The backend for the next turn: the one `build` makes, metered; else the offline one, and why.

    The offline backend answers when the chosen one cannot be built (a missing key, a folder that
    is not a model: `build` raised a ChatbotError), was set aside after failing in a way every
    message would repeat (`set_aside`: why), or a spending limit is already reached. A limit
    reached between this check and the call is caught by the metered backend itself.
    """
    try:
        backend = build()
    except ChatbotError as exc:
        return Answering(offline(), str(exc), "unavailable")
    if set_aside:
        return Answering(offline(), set_aside, "unavailable")
    if is_metered(backend):
        try:
            verdict = spending.check(client_id, conversation_id)
        except redis.RedisError as exc:
            log.warning("Spending limits unavailable: %s", exc)
            verdict = Verdict(False, "unavailable")
        if not verdict.allowed:
            return Answering(offline(), verdict.message, "limit", verdict.resets_in, verdict.limit)
    return Answering(metered_backend(backend, spending, client_id, conversation_id))
