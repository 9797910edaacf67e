"""Value types that cross layers: a retrieved passage, a request to a backend, token usage."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Passage:
    """A retrieved chunk with its score and the retrievers that found it."""

    text: str
    source: str
    title: str
    chunk: int
    score: float
    heading: str = ""
    doc_id: str = ""
    category: str = ""
    retrievers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "source": self.source,
            "title": self.title,
            "chunk": self.chunk,
            "score": round(float(self.score), 4),
            "heading": self.heading,
            "doc_id": self.doc_id,
            "category": self.category,
            "retrievers": list(self.retrievers),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Passage":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class Usage:
    """Token counts a backend reports at the end of a stream."""

    input_tokens: int = 0
    output_tokens: int = 0
    # Why generation ended, where the backend knows: "end_turn" (the model's end-of-turn token) or "max_tokens".
    stop_reason: str = ""


@dataclass
class ChatRequest:
    """Everything a backend needs for one reply."""

    system: str
    messages: list[dict[str, str]]
    temperature: float = 0.2
    max_tokens: int = 600
    # The offline backend answers from these directly; API backends see them in `system`.
    passages: list[Passage] = field(default_factory=list)
    query: str = ""
    json_mode: bool = False
