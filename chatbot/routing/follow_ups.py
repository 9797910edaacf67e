"""Follow-up rules: when a short message leans on the previous turn, and how the two are joined."""

from __future__ import annotations

import re

import numpy as np

from chatbot.routing.routes import RouteChoice

# Short messages that lean on the previous turn ("still not working", "what about the other one").
FOLLOW_UP_WORDS = 7
FOLLOW_UP_CUE = re.compile(
    r"\b(still|again|same (?:problem|issue|thing|error)|also|as well|what about|how about|any (?:news|update)"
    r"|(?:did|does|do|is|was|has|have)(?:n[’']?t| not) (?:work|help|fix|change|arrive|come)\w*"
    r"|not (?:working|fixed|sorted|resolved))\b",
    re.IGNORECASE,
)


def is_short(text: str) -> bool:
    """Few enough words to lean on the previous turn."""
    return len(text.split()) <= FOLLOW_UP_WORDS


def is_follow_up(text: str, choice: RouteChoice) -> bool:
    """A short message that refers back ("still not working") or that the router cannot place alone."""
    return is_short(text) and (choice.abstained or bool(FOLLOW_UP_CUE.search(text)))


def join_turns(previous: str, previous_vector: np.ndarray, text: str, vector: np.ndarray) -> tuple[str, np.ndarray]:
    """The two messages as one text, and its embedding approximated without running the encoder.

    A mean-pooled embedding of joined texts is close to the length-weighted mean of their
    embeddings, so the follow-up costs no second encoder pass.
    """
    a, b = len(previous.split()) or 1, len(text.split()) or 1
    mixed = a * np.asarray(previous_vector, dtype=np.float64) + b * np.asarray(vector, dtype=np.float64)
    norm = np.linalg.norm(mixed)
    return f"{previous} {text}", (mixed / norm if norm else mixed).astype(np.float32)
