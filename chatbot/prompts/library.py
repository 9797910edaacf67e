"""The prompt library: versioned templates, the system-prompt builder, few-shot selection, chain of thought.

The chat renders a template's production version; admins save new versions, publish and roll
back through the same library object (the admin page, the CLI), so a change takes effect on the
next turn without a restart or a deploy.
"""

from __future__ import annotations

import difflib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from common.errors import PromptNotFound, PromptValidationError, StaleVersionError, shown
from chatbot.prompts.store import FilePromptStore, MemoryPromptStore, PromptStore, VersionInfo
from chatbot.prompts.template import PromptTemplate, compile_text, fill, parse_template, sha256_text
from chatbot.prompts.template_yaml import skeleton, to_yaml
from chatbot.prompts.yaml_text import load_variables
from common.types import Passage

if TYPE_CHECKING:
    from knowledge.embeddings import Embedder

__all__ = [
    "SECTION_ORDER", "PromptLibrary", "PromptTemplate", "RenderedPrompt", "build_system_prompt",
    "format_passages", "open_prompt_library", "shipped_templates", "is_complex", "PromptValidationError",
    "StaleVersionError", "PromptNotFound", "VersionInfo", "parse_template", "to_yaml", "skeleton", "load_variables",
]

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
FALLBACK = "general"
SEED_AUTHOR = "system"

# The order the model sees; fixed so that a template edit never reshuffles the prompt.
SECTION_ORDER = (
    "role", "customer", "knowledge", "conversation_summary", "tone",
    "escalation_rules", "response_format", "guardrails", "reasoning", "examples",
)

REASONING_PREAMBLE = (
    "Before you answer, think the problem through inside <thinking> and </thinking> tags. The customer "
    "never sees what is inside the tags, so put every check there and nothing the customer needs. Then "
    "write the answer after the closing tag, without mentioning the reasoning."
)
EXAMPLES_PREAMBLE = (
    "Replies to similar messages, to show the style and the format. Take facts only from the knowledge "
    "passages, never from these examples."
)

_WORDS = re.compile(r"[a-z0-9']+")
_SENTENCE_END = re.compile(r"[.!?]+(\s|$)")


@dataclass
class RenderedPrompt:
    """A system prompt ready to send, with the template identity recorded on the turn."""

    system: str
    name: str
    version: int
    hash: str
    temperature: float
    max_tokens: int
    # Whether the model was told to reason in <thinking> tags: the reply stream must be filtered.
    chain_of_thought: bool = False
    # Indices of the template examples placed in the prompt, best match first.
    examples: list[int] = field(default_factory=list)
    # The template's settings against loops (1.0 and 0: off), for the backends that take them.
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0


def is_complex(query: str) -> bool:
    """Whether a message looks complex enough for `chain_of_thought: auto` (long, or several questions)."""
    words = len(_WORDS.findall(query.lower()))
    return words >= 40 or query.count("?") >= 2 or len(_SENTENCE_END.findall(query)) >= 3


# The frames values are filled into: every value passes through `fill`, which neutralises its markup.
_PASSAGE = compile_text('<passage id="{number}" source="{source}" title="{title}">\n{text}\n</passage>')[0]
_CUSTOMER_LINE = compile_text("{label}: {value}")[0]
_EXAMPLE = compile_text("<example>\nCustomer: {user}\nAssistant: {reply}\n</example>")[0]
_DATA = compile_text("{value}")[0]


def format_passages(passages: Sequence[Passage]) -> str:
    """Numbered passages, the numbers the reply cites."""
    blocks = []
    for number, p in enumerate(passages, 1):
        where = f"{p.title} > {p.heading}" if p.heading else p.title
        blocks.append(fill(_PASSAGE, {"number": str(number), "source": p.source, "title": where, "text": p.text}))
    return "\n".join(blocks) if blocks else "No passage matched this message."


def format_customer(customer: Mapping | None) -> str:
    """Customer context (account tier, history, ...) as labelled lines."""
    lines = []
    for key, value in (customer or {}).items():
        if value in (None, "", [], {}):
            continue
        if isinstance(value, (list, tuple)):
            value = "; ".join(str(v) for v in value)
        lines.append(fill(_CUSTOMER_LINE, {"label": str(key).replace("_", " ").capitalize(), "value": str(value)}))
    return "\n".join(lines)


def template_values(template: PromptTemplate, customer: Mapping | None = None,
                    variables: Mapping | None = None) -> dict[str, str]:
    """Variable values: the template's defaults, then matching customer fields, then explicit values."""
    values = dict(template.variables)
    for source in (customer or {}, variables or {}):
        for key, value in source.items():
            if key in values and value not in (None, ""):
                values[key] = str(value)
    return values


def build_system_prompt(template: PromptTemplate, passages: Sequence[Passage], summary: str,
                        customer: Mapping | None = None, *, examples: Sequence[int] | None = None,
                        variables: Mapping | None = None, reasoning: bool | None = None) -> str:
    """Assemble the sections that have content, each in its XML tag, in SECTION_ORDER."""
    values = template_values(template, customer, variables)
    if reasoning is None:
        reasoning = template.chain_of_thought is True
    chosen = range(len(template.examples)) if examples is None else examples
    shots = []
    for index in chosen:
        # An example is data too: its text (not only its variables) cannot close <examples>.
        user, reply = template.example(index, values)
        shots.append(fill(_EXAMPLE, {"user": user.strip(), "reply": reply.strip()}))
    steps = template.section("reasoning", values).strip()
    sections = {
        "role": template.section("role", values),
        "customer": format_customer(customer),
        # Passages, summary and customer fields are data: never scanned for {variables}.
        "knowledge": format_passages(passages) if template.knowledge else "",
        "conversation_summary": fill(_DATA, {"value": summary or ""}),
        "tone": template.section("tone", values),
        "escalation_rules": template.section("escalation_rules", values),
        "response_format": template.section("response_format", values),
        "guardrails": template.section("guardrails", values),
        "reasoning": (REASONING_PREAMBLE + (f"\nSteps:\n{steps}" if steps else "")) if reasoning else "",
        "examples": (EXAMPLES_PREAMBLE + "\n" + "\n".join(shots)) if shots else "",
    }
    return "\n\n".join(
        f"<{name}>\n{sections[name].strip()}\n</{name}>" for name in SECTION_ORDER if sections[name].strip()
    )


class FewShotSelector:
    """Picks the k template examples closest to the message, through the chat's own embeddings."""

    def __init__(self, embedder: "Embedder | None" = None, cache_size: int = 64):
        self.embedder = embedder
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _example_vectors(self, template: PromptTemplate) -> np.ndarray:
        key = template.content_hash()
        with self._lock:
            vectors = self._vectors.get(key)
            if vectors is not None:
                self._vectors.move_to_end(key)
                return vectors
        vectors = self.embedder.embed([e["user"] for e in template.examples])
        with self._lock:
            self._vectors[key] = vectors
            while len(self._vectors) > self._cache_size:
                self._vectors.popitem(last=False)
        return vectors

    def select(self, template: PromptTemplate, query: str, query_vector: np.ndarray | None = None,
               k: int | None = None) -> list[int]:
        """Indices of the chosen examples, most similar first."""
        k = template.few_shot_k if k is None else k
        count = len(template.examples)
        if k <= 0 or count == 0:
            return []
        if count <= k:
            return list(range(count))  # nothing to rank: keep the admin's order
        if not query and query_vector is None:
            return list(range(k))
        if self.embedder is not None:
            if query_vector is None:
                query_vector = self.embedder.embed_one(query)
            scores = self._example_vectors(template) @ np.asarray(query_vector, dtype=np.float32)
        else:
            # Without an embedder (a library built bare, in tests): word overlap, still deterministic.
            words = set(_WORDS.findall(query.lower()))
            scores = np.array([_overlap(words, set(_WORDS.findall(e["user"].lower()))) for e in template.examples])
        # Stable: ties keep the admin's order.
        return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def _overlap(a: set, b: set) -> float:
    return len(a & b) / (len(a | b) or 1)


@lru_cache(maxsize=1)
def _shipped_texts() -> tuple[tuple[str, str], ...]:
    return tuple((p.stem, p.read_text(encoding="utf-8")) for p in sorted(TEMPLATES_DIR.glob("*.yaml")))


def shipped_templates() -> dict[str, str]:
    """The YAML text of every template shipped in the source tree, by name."""
    return dict(_shipped_texts())


class PromptLibrary:
    """The templates the chat renders from: production versions, edits, labels and history."""

    def __init__(self, store: PromptStore | None = None, embedder: "Embedder | None" = None, seed: bool = True):
        self.store = store if store is not None else MemoryPromptStore()
        self.selector = FewShotSelector(embedder)
        self._parsed: dict[tuple[str, int], PromptTemplate] = {}
        if seed:
            self.seed()

    @property
    def embedder(self) -> "Embedder | None":
        return self.selector.embedder

    def seed(self) -> list[str]:
        """Add each shipped template the store does not have yet as its v1 (production); returns their names."""
        added = []
        have = set(self.store.names())
        for name, text in shipped_templates().items():
            if name in have:
                continue  # an admin's versions are never overwritten by the shipped text
            try:
                self.store.save(name, text, author=SEED_AUTHOR, message="Shipped template", base_version=0,
                                publish=True)
                added.append(name)
            except StaleVersionError:
                pass  # another process seeded it first
        return added

    # -- reading ----------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every template name."""
        return self.store.names()

    def template(self, name: str, version: int) -> PromptTemplate:
        """A version parsed (cached: versions never change)."""
        key = (name, int(version))
        parsed = self._parsed.get(key)
        if parsed is None:
            parsed = self._parsed[key] = parse_template(self.store.version(name, version).text)
        return parsed

    def get(self, name: str) -> tuple[PromptTemplate, int]:
        """The production template and its version; an unknown name falls back to `general`."""
        version = self.store.production(name)
        if version is None:
            name, version = FALLBACK, self.store.production(FALLBACK)
            if version is None:
                raise PromptNotFound(f"No prompt template named '{FALLBACK}' in the store.")
        return self.template(name, version), version

    def version(self, name: str, version: int | None = None) -> VersionInfo:
        """One version's record; production when `version` is None."""
        if version is None:
            version = self.store.production(name)
            if version is None:
                raise PromptNotFound(f"No prompt template named '{shown(name)}'.")
        return self.store.version(name, version)

    def history(self, name: str) -> list[VersionInfo]:
        """Every version, newest first."""
        return self.store.history(name)

    def labels(self, name: str) -> dict[str, int]:
        """{"production": v, "draft": v, "latest": v}."""
        return self.store.labels(name)

    def overview(self) -> list[dict]:
        """One row per template: description, labels, how many versions, last change."""
        rows = []
        for name in self.names():
            labels = self.labels(name)
            latest = self.store.version(name, labels["latest"])
            template = self.template(name, labels["production"])
            rows.append({
                "name": name, "description": template.description, "production": labels["production"],
                "draft": labels.get("draft", labels["latest"]), "versions": labels["latest"],
                "updated_at": latest.created_at, "updated_by": latest.author, "tags": template.tags,
            })
        return rows

    def diff(self, name: str, old: int, new: int, context: int = 3) -> str:
        """A unified diff between two versions ('' when identical)."""
        a, b = self.store.version(name, old), self.store.version(name, new)
        return "".join(difflib.unified_diff(
            a.text.splitlines(keepends=True), b.text.splitlines(keepends=True),
            fromfile=f"{name} v{old}", tofile=f"{name} v{new}", n=context,
        ))

    # -- writing ----------------------------------------------------------------------------------
    def save(self, name: str, text: str, *, author: str, message: str, base_version: int,
             publish: bool = False) -> VersionInfo:
        """Validate and save a new version after `base_version`; it becomes the draft (and production if asked).

        Raises PromptValidationError (with the line) or StaleVersionError; nothing is written then.
        Saving text identical to the latest version writes nothing and returns that version.
        """
        if not author.strip():
            raise PromptValidationError("Give your name as the author of this change.", field="author")
        if not message.strip():
            raise PromptValidationError("Describe the change in the message: the history shows it.", field="message")
        parse_template(text, expected_name=name)
        latest = self.store.labels(name).get("latest", 0)
        if latest and latest == base_version and self.store.version(name, latest).sha256 == sha256_text(text):
            return self.store.version(name, latest)
        return self.store.save(name, text, author=author.strip(), message=message.strip(),
                               base_version=base_version, publish=publish)

    def publish(self, name: str, version: int | None = None, *, author: str,
                expected: int | None = None) -> int | None:
        """Make a version (the draft by default) the one the chat uses; returns the previous production."""
        if version is None:
            version = self.store.labels(name).get("draft")
            if version is None:
                raise PromptNotFound(f"No prompt template named '{shown(name)}'.")
        self.template(name, version)  # a version that no longer parses is never published
        return self.store.set_label(name, "production", version, author=author, action="publish",
                                    expected=expected)

    def rollback(self, name: str, version: int, *, author: str, expected: int | None = None) -> int | None:
        """Move production back to an earlier version; returns the version it replaced."""
        current = self.store.production(name)
        if current is None:
            raise PromptNotFound(f"No prompt template named '{shown(name)}'.")
        if version >= current:
            raise PromptValidationError(
                f"v{version} is not earlier than production v{current}; publish it instead of rolling back.",
                field="version",
            )
        self.template(name, version)
        return self.store.set_label(name, "production", version, author=author, action="rollback",
                                    expected=expected)

    # -- rendering --------------------------------------------------------------------------------
    def render(self, name: str, *, passages: Sequence[Passage], summary: str = "", customer: Mapping | None = None,
               query: str = "", query_vector: np.ndarray | None = None, variables: Mapping | None = None,
               version: int | None = None) -> RenderedPrompt:
        """Render the production version of `name` (or `version`) for one turn."""
        if version is None:
            template, version = self.get(name)
        else:
            template = self.template(name, version)
        return self.render_template(template, version, passages=passages, summary=summary, customer=customer,
                                    query=query, query_vector=query_vector, variables=variables)

    def render_template(self, template: PromptTemplate, version: int, *, passages: Sequence[Passage],
                        summary: str = "", customer: Mapping | None = None, query: str = "",
                        query_vector: np.ndarray | None = None, variables: Mapping | None = None) -> RenderedPrompt:
        """Render a parsed template (an unsaved edit in the admin's test-render, say)."""
        examples = self.selector.select(template, query, query_vector)
        reasoning = template.chain_of_thought is True or (template.chain_of_thought == "auto" and is_complex(query))
        return RenderedPrompt(
            system=build_system_prompt(template, passages, summary, customer, examples=examples,
                                       variables=variables, reasoning=reasoning),
            name=template.name, version=version, hash=template.content_hash(),
            temperature=template.temperature, max_tokens=template.max_tokens,
            chain_of_thought=reasoning, examples=examples, repetition_penalty=template.repetition_penalty,
            no_repeat_ngram_size=template.no_repeat_ngram_size,
        )


def open_prompt_library(data_dir: Path, embedder: "Embedder | None" = None) -> PromptLibrary:
    """The library over `<data_dir>/prompts/`, seeded from the shipped YAML on first run."""
    return PromptLibrary(FilePromptStore(Path(data_dir) / "prompts"), embedder=embedder)
