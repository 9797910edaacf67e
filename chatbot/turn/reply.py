"""One turn's reply as it streams; what the turn did is its `TurnMeta` (chatbot/store/messages.py), stored with it."""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterator

from backends.base import Backend
from chatbot.store.messages import HANDOFF, INTERRUPTED_TEXT, TurnMeta
from chatbot.turn.citations import cited_numbers
from chatbot.store.outcomes import read_outcome
from chatbot.turn.reasoning import ReasoningFilter
from chatbot.triage.triage import TriageState
from common.errors import BackendError, ChatbotError
from common.types import ChatRequest, Passage, Usage

log = logging.getLogger(__name__)


# Called once when a reply's stream ends: (the reply, whether it failed).
TurnEnd = Callable[["Reply", bool], None]


class Reply:
    """One turn's reply: iterate it for text pieces (streamed), then read `text` and `meta`.

    When the stream ends, successfully or not, `on_end(reply, failed)` runs once: the Chatbot
    stores the turn there.
    """

    def __init__(self, session_id: str, user_text: str, request: ChatRequest, meta: TurnMeta, started: float,
                 backend: Backend, *, on_end: TurnEnd, reasoning: bool = False,
                 triage_state: TriageState | None = None):
        self.session_id = session_id
        self.user_text = user_text
        self._on_end = on_end
        self._request = request
        self.meta = meta
        self._started = started
        self._backend = backend
        self._reasoning = reasoning
        self.triage_state = triage_state
        self.text = ""
        # The model's hidden <thinking> text, for admins only (empty unless the template asks for it).
        self.reasoning = ""
        self.done = False

    @property
    def request(self) -> ChatRequest:
        """What the backend is (or was) asked: system prompt, messages, generation settings, passages."""
        return self._request

    @property
    def passages(self) -> list[Passage]:
        return self._request.passages

    def __iter__(self) -> Iterator[str]:
        if self.done:
            return
        pieces: list[str] = []
        stream_started = time.perf_counter()
        # The model's reasoning (chain of thought) never reaches the customer, the store or the citations.
        hidden = ReasoningFilter() if self._reasoning else None
        try:
            for piece in self._backend.stream(self._request):
                if isinstance(piece, Usage):
                    self.meta.input_tokens, self.meta.output_tokens = piece.input_tokens, piece.output_tokens
                    self.meta.stop_reason = piece.stop_reason
                    continue
                if hidden is not None:
                    piece = hidden.feed(piece)
                    if not piece:
                        continue
                if not pieces:
                    now = time.perf_counter()
                    self.meta.stages_ms["first_token"] = (now - stream_started) * 1000
                    self.meta.ttft_ms = (now - self._started) * 1000
                pieces.append(piece)
                yield piece
            tail = hidden.flush() if hidden is not None else ""
            self.reasoning = hidden.reasoning if hidden is not None else ""
            if tail:
                if not pieces:
                    self.meta.ttft_ms = (time.perf_counter() - self._started) * 1000
                pieces.append(tail)
                yield tail
        except BackendError as exc:
            self.text = "".join(pieces)
            self._count_locally()
            self.meta.error, self.meta.interrupted = str(exc), bool(pieces)
            self._finish(failed=True)
            raise
        except BaseException:
            # Streamlit's rerun or stop, the generator closed or dropped (GeneratorExit), anything
            # else: the customer's message is already stored; keep what arrived, marked interrupted.
            self.text = "".join(pieces)
            self._count_locally()
            self.close()
            raise
        self.text = "".join(pieces)
        self._finish(failed=False)

    def _count_locally(self) -> None:
        """A reply cut off before the backend reported its usage: the tokens it did use, counted
        locally (the prompt and the text that arrived), as the spending limits count them."""
        if self.text and not (self.meta.input_tokens or self.meta.output_tokens):
            self.meta.input_tokens = self._backend.prompt_tokens(self._request)
            self.meta.output_tokens = self._backend.count_tokens(self.text)

    def close(self) -> None:
        """End a reply that will not be streamed further: stored as interrupted, with the text so far."""
        if self.done:
            return
        self.meta.interrupted = True
        self.meta.error = self.meta.error or INTERRUPTED_TEXT
        try:
            self._finish(failed=True)
        except ChatbotError as exc:  # the store is down too: the message stays pending, read as interrupted later
            log.warning("Could not record an interrupted reply: %s", exc)

    def consume(self) -> str:
        """Run the whole stream and return the reply text."""
        for _ in self:
            pass
        return self.text

    def _finish(self, failed: bool) -> None:
        if self.done:
            return
        self.done = True
        self.meta.latency_ms = (time.perf_counter() - self._started) * 1000
        self.meta.citations = cited_numbers(self.text, len(self._request.passages))
        if not failed and self.meta.backend != HANDOFF:
            self.meta.outcome = read_outcome(self.text, self.meta.stop_reason)
        self._on_end(self, failed)
