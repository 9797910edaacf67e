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
    # Cosine similarity of the chunk's vector to the query's (-1..1), where the vector retriever found
    # it; None for a passage found by keywords alone. Unlike `score` (scaled within one result list),
    # it says how close the passage is in absolute terms: the offline backend's relevance floor.
    similarity: float | None = None

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
            **({"similarity": round(float(self.similarity), 4)} if self.similarity is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Passage":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class Stop:
    """Why a backend stopped generating, in the product's words whatever the provider's."""

    # The model ended its answer (OpenAI "stop", Anthropic "end_turn", Ollama "stop", an end-of-turn token).
    END = "end_turn"
    # Cut off at the request's token limit (OpenAI and Ollama "length", Anthropic "max_tokens",
    # a local model reaching max_new_tokens).
    LENGTH = "max_tokens"
    # The model or the provider's filter declined to answer (an OpenAI refusal or "content_filter",
    # Anthropic "refusal").
    REFUSAL = "refusal"


@dataclass
class Usage:
    """Token counts and the stop reason a backend reports at the end of a stream."""

    input_tokens: int = 0
    output_tokens: int = 0
    # Why generation ended, where the backend knows: a `Stop` value, a provider's own word for a
    # reason the product does not name, or "" when the backend does not say.
    stop_reason: str = ""


@dataclass
class ChatRequest:
    """Everything a backend needs for one reply."""

    system: str
    messages: list[dict[str, str]]
    temperature: float = 0.2
    max_tokens: int = 600
    # Against loops, from the prompt template: a penalty over 1.0 on tokens the reply already has, and no
    # n-gram of this many tokens twice in the reply (transformers' names; the local backend and Ollama
    # take them, the API backends have no equivalent). 1.0 and 0 are off.
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    # The offline backend answers from these directly; API backends see them in `system`.
    passages: list[Passage] = field(default_factory=list)
    query: str = ""
    json_mode: bool = False
