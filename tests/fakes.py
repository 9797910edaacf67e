"""A scripted backend: a queue of replies, and a record of every request it was sent.

It stands in for a language model in Chatbot tests, where the subject is the turn around the
model; the real SDK clients are tested against protocol servers in test_backend_*.py.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Iterator

from common.types import ChatRequest, Usage
from backends.base import Backend
from common.errors import BackendError


class FakeBackend(Backend):
    """Replies from a queue (strings, or BackendError instances to raise)."""

    name = "fake"
    model = "scripted"

    def __init__(self, replies=(), can_summarise: bool = True, fail_after_pieces: int | None = None):
        self.replies: deque = deque(replies)
        self.requests: list[ChatRequest] = []
        self.can_summarise = can_summarise
        self.fail_after_pieces = fail_after_pieces

    def stream(self, request: ChatRequest) -> Iterator[str | Usage]:
        self.requests.append(request)
        reply = self.replies.popleft() if self.replies else "Default reply [1]."
        if isinstance(reply, BackendError):
            raise reply
        pieces = re.findall(r"\S+\s*", reply)
        for number, piece in enumerate(pieces):
            if self.fail_after_pieces is not None and number == self.fail_after_pieces:
                raise BackendError("the stream broke")
            yield piece
        yield Usage(input_tokens=len(request.system) // 4, output_tokens=len(pieces))
