"""Hide the model's <thinking>...</thinking> reasoning from the customer, also mid-stream."""

from __future__ import annotations

OPEN = "<thinking>"
CLOSE = "</thinking>"


def _held(buffer: str, tags: tuple[str, ...]) -> int:
    """Length of the longest end of `buffer` that could still grow into one of `tags`."""
    lowered = buffer[-max(map(len, tags)):].lower()
    for size in range(min(len(lowered), max(map(len, tags)) - 1), 0, -1):
        tail = lowered[-size:]
        if any(tag.startswith(tail) for tag in tags):
            return size
    return 0


class ReasoningFilter:
    """Feed it the reply's pieces as they stream; it returns only what the customer may see.

    A tag split across pieces ("<thin" + "king>") is held back until it is complete or proven not
    to be a tag. Text inside the tags is kept in `reasoning` (for admins), never returned. A block
    left open at the end stays hidden; a stray closing tag is dropped.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._inside = False
        self._strip_leading = False
        self._reasoning: list[str] = []
        self.blocks = 0

    @property
    def reasoning(self) -> str:
        """The hidden reasoning so far."""
        return "".join(self._reasoning)

    @property
    def unclosed(self) -> bool:
        """True while a <thinking> block is open."""
        return self._inside

    def feed(self, piece: str) -> str:
        """Add a piece of the stream; return the customer-visible text it completes (maybe '')."""
        self._buffer += piece
        visible: list[str] = []
        while self._buffer:
            lowered = self._buffer.lower()
            if self._inside:
                end = lowered.find(CLOSE)
                if end < 0:
                    keep = _held(self._buffer, (CLOSE,))
                    self._reasoning.append(self._buffer[:len(self._buffer) - keep])
                    self._buffer = self._buffer[len(self._buffer) - keep:]
                    break
                self._reasoning.append(self._buffer[:end])
                self._buffer = self._buffer[end + len(CLOSE):]
                self._inside = False
                # The answer after the block starts at its first word, not at the blank line.
                self._strip_leading = True
                continue
            start, stray = lowered.find(OPEN), lowered.find(CLOSE)
            if stray >= 0 and (start < 0 or stray < start):
                visible.append(self._buffer[:stray])
                self._buffer = self._buffer[stray + len(CLOSE):]
                continue
            if start >= 0:
                visible.append(self._buffer[:start])
                self._buffer = self._buffer[start + len(OPEN):]
                self._inside = True
                self.blocks += 1
                continue
            keep = _held(self._buffer, (OPEN, CLOSE))
            visible.append(self._buffer[:len(self._buffer) - keep])
            self._buffer = self._buffer[len(self._buffer) - keep:]
            break
        return self._emit("".join(visible))

    def flush(self) -> str:
        """End of stream: return held-back text that turned out not to be a tag."""
        rest, self._buffer = self._buffer, ""
        if self._inside:
            self._reasoning.append(rest)
            return ""
        return self._emit(rest)

    def _emit(self, text: str) -> str:
        if self._strip_leading and text:
            text = text.lstrip()
            if text:
                self._strip_leading = False
        return text


def strip_reasoning(text: str) -> str:
    """A whole reply without its <thinking> blocks."""
    f = ReasoningFilter()
    return f.feed(text) + f.flush()
