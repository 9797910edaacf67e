"""Repeated sentences in a model's reply: found in a whole text, or held back from a stream as it arrives.

Small models (the bundled 135M SmolLM2 among them) fall into loops: once a sentence comes out a second
time, every later one is usually another copy. A repeat-aware stream stops the reply there, so that the
draft an agent gets ends after its last new sentence instead of filling the token budget with copies.

A sentence is a repeat of an earlier one when their normalised words (lower case, citation markers and
punctuation removed) are equal, or, for sentences of five words or more, when difflib's
`SequenceMatcher.ratio()` between them is at least `NEAR_DUPLICATE` (0.85; 1.0 is equal, and the
ratio is 2·matches / total characters, as documented for difflib).
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

# Above this ratio two sentences are the same sentence with a word or two changed: a loop, not an answer.
NEAR_DUPLICATE = 0.85
# Sentences shorter than this (in words) are compared only for equality ("1.", "Thanks!").
FUZZY_MIN_WORDS = 5
# A sentence ends at . ! ? (then whitespace) or at a line break; list items end at their line break.
_END = re.compile(r"(?<=[.!?])\s+|\n+")
_CITATION = re.compile(r"\[[\d\s,;&\-–and]*\]")
_WORD = re.compile(r"[a-z0-9']+")
# How many leading words of a sentence in progress are compared with earlier sentences' openings.
_OPENING_WORDS = 4


def normalise(sentence: str) -> str:
    """A sentence's words, lower case, without citation markers or punctuation, one space apart."""
    return " ".join(_WORD.findall(_CITATION.sub(" ", sentence.lower())))


def split_sentences(text: str) -> list[str]:
    """The sentences of `text` in order, each with its own closing punctuation, stripped."""
    return [part.strip() for part in _END.split(text) if part and part.strip()]


def repeats(sentence: str, earlier: list[str]) -> bool:
    """Whether `sentence` repeats one of `earlier` (normalised sentences); a one-word fragment never does."""
    words = normalise(sentence)
    if len(words.split()) < 2:
        return False
    if words in earlier:
        return True
    if len(words.split()) < FUZZY_MIN_WORDS:
        return False
    return any(SequenceMatcher(None, words, seen, autojunk=False).ratio() >= NEAR_DUPLICATE for seen in earlier
               if len(seen.split()) >= FUZZY_MIN_WORDS)


def repeated_sentences(text: str) -> list[str]:
    """The sentences of `text` that repeat an earlier sentence of it, in order ([] for a reply without a loop)."""
    seen: list[str] = []
    found: list[str] = []
    for sentence in split_sentences(text):
        if repeats(sentence, seen):
            found.append(sentence)
        else:
            seen.append(normalise(sentence))
    return found


class RepeatGuard:
    """Passes a reply's text through as it streams, and stops it before the first repeated sentence.

    `feed(piece)` returns the text that may be shown now; `finish()` the rest once the stream ends.
    A sentence in progress is shown as soon as its first words differ from every earlier sentence's
    opening; one that starts like an earlier sentence is held until it ends, then dropped (and the
    guard `stopped`) if it repeats one. A near-duplicate that opened differently is shown, and the
    reply stops after it.
    """

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.stopped = False
        self._current = ""  # the sentence in progress, as far as it has arrived
        self._shown = 0  # how many of its characters were already passed on

    def feed(self, piece: str) -> str:
        """The part of `piece` (plus anything held before it) that can be shown now; "" once stopped."""
        if self.stopped:
            return ""
        self._current += piece
        out: list[str] = []
        while not self.stopped and (end := _END.search(self._current)) is not None:
            sentence, self._current = self._current[:end.end()], self._current[end.end():]
            out.append(self._close(sentence))
        if not self.stopped:
            out.append(self._open_part())
        return "".join(out)

    def finish(self) -> str:
        """What is left once the stream has ended: the last sentence, unless it repeats an earlier one."""
        if self.stopped or not self._current:
            return ""
        sentence, self._current = self._current, ""
        return self._close(sentence)

    def _close(self, sentence: str) -> str:
        """A whole sentence (with the whitespace after it): the part not shown yet, or "" for a repeat."""
        unshown, self._shown = sentence[self._shown:], 0
        if repeats(sentence, self.seen):
            # A held repeat is dropped; one that opened differently was partly shown and ends the reply.
            self.stopped = True
            return ""
        if normalise(sentence):
            self.seen.append(normalise(sentence))
        return unshown

    def _open_part(self) -> str:
        """The sentence in progress, once its opening words differ from every earlier sentence's."""
        if not self._shown:
            words = normalise(self._current).split()
            # The last word may still be growing: decide on complete words only.
            complete = words[:-1] if self._current and not self._current[-1].isspace() else words
            if len(complete) < _OPENING_WORDS:
                return ""
            opening = " ".join(complete[:_OPENING_WORDS])
            if any(seen.startswith(opening) for seen in self.seen):
                return ""  # it may be a repeat: hold it until it ends
        out, self._shown = self._current[self._shown:], len(self._current)
        return out
