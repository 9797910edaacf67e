"""The time a request spent in the chat core, sent back as a `Server-Timing` header.

`Server-Timing: core;dur=12.34` (W3C Server Timing, https://www.w3.org/TR/server-timing/, `dur`
in milliseconds) on `/v1/chat`, `/v1/classify` and a non-streamed `/v1/chat/completions`: the
time in the same calls an in-process caller makes (`Chatbot.send` and the reply's consumption, or
`classify`). A client's round trip minus `core` is what the HTTP API added to that very request:
the key check, parsing, the thread hop and the network. Browsers' developer tools show the header.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

HEADER = "Server-Timing"


class CoreTimer:
    """Milliseconds spent inside `span()` blocks, minus those `exclude`d from them."""

    def __init__(self) -> None:
        self.ms = 0.0

    @contextmanager
    def span(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.ms += (time.perf_counter() - started) * 1000

    def exclude(self, ms: float) -> None:
        """Take out time spent inside a span on the API's own work (the key's token count, say)."""
        self.ms -= ms

    def header(self) -> dict[str, str]:
        return {HEADER: f"core;dur={self.ms:.2f}"}
