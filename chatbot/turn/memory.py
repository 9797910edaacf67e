"""Sliding-window memory with a rolling summary of older turns."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from backends.base import estimate_tokens

Summariser = Callable[[str, list[dict]], str]
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
SUMMARY_CHAR_LIMIT = 1200


@dataclass
class ConversationMemory:
    """Recent messages kept verbatim within a token budget; older ones folded into `summary`."""

    window_tokens: int = 1500
    window_messages: int = 12
    messages: list[dict] = field(default_factory=list)
    summary: str = ""
    summarised_count: int = 0
    count_tokens: Callable[[str], int] = field(default=estimate_tokens, repr=False, compare=False)

    def add(self, role: str, content: str) -> None:
        self.messages.append({"role": role, "content": content})

    def tokens(self) -> int:
        return sum(self.count_tokens(m["content"]) for m in self.messages)

    def overflow(self) -> list[dict]:
        """Remove and return the oldest whole turns until the window fits its budgets."""
        folded: list[dict] = []
        # Keep at least the newest exchange, whatever its size.
        while len(self.messages) > 2 and (
            len(self.messages) > self.window_messages or self.tokens() > self.window_tokens
        ):
            folded.append(self.messages.pop(0))
            # Fold a user message together with the reply that answered it.
            if self.messages and self.messages[0]["role"] == "assistant":
                folded.append(self.messages.pop(0))
        return folded

    def fold(self, summarise: Summariser) -> bool:
        """Fold overflowing turns into the summary; True when anything was folded."""
        folded = self.overflow()
        if not folded:
            return False
        self.summary = summarise(self.summary, folded).strip()
        self.summarised_count += len(folded)
        return True

    def context(self) -> tuple[str, list[dict]]:
        """What the model receives: the summary and the recent messages."""
        return self.summary, list(self.messages)

    def clear(self) -> None:
        self.messages.clear()
        self.summary = ""
        self.summarised_count = 0

    def to_dict(self) -> dict:
        return {"messages": self.messages, "summary": self.summary, "summarised_count": self.summarised_count}

    def load(self, data: dict) -> None:
        self.messages = [dict(m) for m in data.get("messages", [])]
        self.summary = data.get("summary", "")
        self.summarised_count = int(data.get("summarised_count", 0))


def extractive_summary(previous: str, folded: list[dict]) -> str:
    """Offline summary: the first sentence of each folded message, newest kept when too long."""
    lines = [previous] if previous else []
    for message in folded:
        first = _SENTENCE.split(message["content"].strip(), maxsplit=1)[0]
        first = first.replace("\n", " ")
        if len(first) > 200:
            first = first[:197].rstrip() + "..."
        who = "Customer" if message["role"] == "user" else "Assistant"
        lines.append(f"- {who}: {first}")
    text = "\n".join(lines)
    # Drop the oldest lines first: recent context matters more.
    while len(text) > SUMMARY_CHAR_LIMIT and "\n" in text:
        text = text.split("\n", 1)[1]
    return text
