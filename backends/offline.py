"""The offline backend: answers by quoting the retrieved passages, with citations."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterator

from common.types import ChatRequest, Usage
from backends.base import Backend, estimate_tokens

if TYPE_CHECKING:
    from common.settings import Settings

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and are as at be but by can could do does for from how i if in is it me my no not of on or our "
    "so that the their there this to was we what when where which who why will with you your get got".split()
)
NOTICE = "*Offline mode: no language model is connected, so this answer quotes the knowledge base.*"
NOT_FOUND = (
    "I could not find this in the knowledge base. Could you add a detail (the product, an error message, "
    "or what you already tried)? A colleague can also take over if you ask for a human."
)

# Below this cosine similarity between the question and its best passage, nothing in the knowledge
# base is about the question, and quoting the nearest article would answer something else. Measured
# with `python -m bench.knowledge_guard` (BENCHMARKS.md, "Offline relevance floor"): on the demo base,
# the best passage of every one of the 165 answerable questions of knowledge/eval/queries.jsonl is
# at 0.203 or above (p5 0.298), and 0.2 turns away 23 of the 30 off-topic questions of
# knowledge/eval/off_topic.jsonl (median 0.144); 0.25 would refuse two answerable questions.
RELEVANCE_FLOOR = 0.2


def _stem(word: str) -> str:
    # A crude stemmer is enough to match "refunds" with "refund" and "charged" with "charge".
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _terms(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP}


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if len(s.strip()) > 2]


class OfflineBackend(Backend):
    """Needs no model and no key: picks the most relevant sentences of the top passages."""

    name = "offline"
    model = "knowledge-base"
    # It quotes passages; it cannot classify intents, summarise turns or switch models.
    can_classify = False
    can_summarise = False
    is_local = True
    model_choice = ""

    def __init__(self, sentences_per_passage: int = 4, max_passages: int = 2, min_score: float = 0.0,
                 whole_passage_chars: int = 700, relevance_floor: float = RELEVANCE_FLOOR):
        self.sentences_per_passage = sentences_per_passage
        self.whole_passage_chars = whole_passage_chars
        self.max_passages = max_passages
        self.min_score = min_score
        self.relevance_floor = relevance_floor

    @classmethod
    def from_settings(cls, settings: Settings | None = None, model: str | None = None,
                      **options: Any) -> "OfflineBackend":
        """The offline backend; it reads no setting."""
        return cls()

    def answer(self, request: ChatRequest) -> str:
        """The whole offline reply."""
        query = _terms(request.query or (request.messages[-1]["content"] if request.messages else ""))
        quoted: list[str] = []
        used: set[tuple[str, str]] = set()
        # Passages found by keywords alone carry no similarity; with none at all (vector search down),
        # the keyword matches are all there is and are quoted.
        similarities = [p.similarity for p in request.passages if p.similarity is not None]
        if similarities and max(similarities) < self.relevance_floor:
            return f"{NOTICE}\n\n{NOT_FOUND}"
        for number, passage in enumerate(request.passages, 1):
            place = (passage.source, passage.heading)
            if len(quoted) >= self.max_passages or passage.score < self.min_score or place in used:
                continue
            if passage.similarity is not None and passage.similarity < self.relevance_floor:
                continue
            text = self._excerpt(passage.text, query)
            # A later passage must share words with the question to be worth quoting.
            if quoted and not query & _terms(text):
                continue
            used.add(place)
            where = f"{passage.title} > {passage.heading}" if passage.heading else passage.title
            lines = [line for line in text.splitlines() if line.strip()]
            lines[-1] += f" [{number}]"
            quoted.append(f"From **{where}**:\n\n" + "\n".join(f"> {line}" for line in lines))
        if not quoted:
            return f"{NOTICE}\n\n{NOT_FOUND}"
        return NOTICE + "\n\n" + "\n\n".join(quoted)

    def _excerpt(self, text: str, query: set[str]) -> str:
        """A short passage whole (its lists intact); from a long one, the sentences nearest the question."""
        if len(text) <= self.whole_passage_chars:
            return text.strip()
        sentences = _sentences(text)
        ranked = sorted(
            range(len(sentences)),
            key=lambda i: (len(query & _terms(sentences[i])), -i),
            reverse=True,
        )
        return "\n".join(sentences[i] for i in sorted(ranked[: self.sentences_per_passage]))

    def stream(self, request: ChatRequest) -> Iterator[str | Usage]:
        reply = self.answer(request)
        # Stream in word-sized pieces so the page renders it the way a model's reply arrives.
        for piece in re.findall(r"\S+\s*|\s+", reply):
            yield piece
        prompt = request.system + "".join(m["content"] for m in request.messages)
        yield Usage(input_tokens=estimate_tokens(prompt), output_tokens=estimate_tokens(reply))
