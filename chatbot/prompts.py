"""Prompt templates and the system-prompt builder (XML-tagged sections in a fixed order)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Sequence

from knowledge.types import Passage

# The order the model sees; fixed so that a template edit never reshuffles the prompt.
SECTION_ORDER = (
    "role", "customer", "knowledge", "conversation_summary", "tone",
    "escalation_rules", "response_format", "guardrails", "reasoning", "examples",
)

DEFAULT_FORMAT = (
    "Answer in a few short paragraphs or numbered steps. Cite the knowledge passages you use with their "
    "numbers in square brackets, like [1] or [2], right after the sentence they support. Cite only "
    "passages you actually used. If the passages do not contain the answer, say so and ask one "
    "clarifying question; never invent policies, prices or time limits."
)
DEFAULT_GUARDRAILS = (
    "Never ask for full card numbers or passwords. Do not promise refunds, credits or exceptions that the "
    "passages do not state. Stay on the topic of the company's products and services."
)
DEFAULT_ESCALATION = (
    "If the customer asks for a human, threatens legal action, reports fraud or a security problem, or is "
    "very upset, say that a colleague will take over."
)


@dataclass
class PromptTemplate:
    """A named prompt: its role text, tone, rules, examples and model settings."""

    name: str
    description: str
    role: str
    tone: str = "Warm, concise and professional. Use the customer's words; no jargon."
    response_format: str = DEFAULT_FORMAT
    guardrails: str = DEFAULT_GUARDRAILS
    escalation_rules: str = DEFAULT_ESCALATION
    examples: list[dict] = field(default_factory=list)
    chain_of_thought: bool = False
    temperature: float = 0.2
    max_tokens: int = 600
    tags: list[str] = field(default_factory=list)

    def content_hash(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


@dataclass
class RenderedPrompt:
    """A system prompt ready to send, with the template identity recorded on the turn."""

    system: str
    name: str
    version: int
    hash: str
    temperature: float
    max_tokens: int


def format_passages(passages: Sequence[Passage]) -> str:
    """Numbered passages, the numbers the reply cites."""
    blocks = []
    for number, p in enumerate(passages, 1):
        where = f"{p.title} > {p.heading}" if p.heading else p.title
        blocks.append(f'<passage id="{number}" source="{p.source}" title="{where}">\n{p.text}\n</passage>')
    return "\n".join(blocks) if blocks else "No passage matched this message."


def build_system_prompt(template: PromptTemplate, passages: Sequence[Passage], summary: str,
                        customer: dict | None = None) -> str:
    """Assemble the sections that have content, each in its XML tag, in SECTION_ORDER."""
    sections = {
        "role": template.role,
        "customer": "\n".join(f"{k}: {v}" for k, v in (customer or {}).items()),
        "knowledge": format_passages(passages),
        "conversation_summary": summary,
        "tone": template.tone,
        "escalation_rules": template.escalation_rules,
        "response_format": template.response_format,
        "guardrails": template.guardrails,
        "reasoning": (
            "Think through the problem step by step inside <thinking> tags first; the customer never sees "
            "them. Then write the answer outside the tags." if template.chain_of_thought else ""
        ),
        "examples": "\n\n".join(
            f"Customer: {e['user']}\nAssistant: {e['assistant']}" for e in template.examples
        ),
    }
    return "\n\n".join(f"<{name}>\n{sections[name].strip()}\n</{name}>" for name in SECTION_ORDER if sections[name].strip())


_ROLE = (
    "You are the support assistant of Nimbus Home, a company that sells smart-home devices and the Nimbus "
    "Plus subscription. You help a human support agent answer customers, using the knowledge passages."
)
DEFAULT_TEMPLATES = {
    "general": PromptTemplate("general", "Any support question", _ROLE),
    "billing": PromptTemplate("billing", "Payments, invoices, refunds", _ROLE + " This message is about billing."),
    "technical": PromptTemplate(
        "technical", "Device and app problems", _ROLE + " This message is about a technical problem.",
        chain_of_thought=True,
    ),
    "account": PromptTemplate("account", "Login, passwords, privacy", _ROLE + " This message is about an account."),
    "summariser": PromptTemplate(
        "summariser", "Folds old turns into the memory summary",
        "Summarise the conversation so far for a support agent in at most 5 bullet points: the customer's "
        "problem, facts given (order numbers, devices, dates), what was tried and what is still open.",
        response_format="Bullet points only.", temperature=0.0, max_tokens=250,
    ),
}


class PromptLibrary:
    """The templates the chat renders from."""

    def __init__(self, templates: dict[str, PromptTemplate] | None = None):
        self.templates = dict(templates or DEFAULT_TEMPLATES)

    def get(self, name: str) -> tuple[PromptTemplate, int]:
        """The template and its version; unknown names fall back to `general`."""
        return self.templates.get(name) or self.templates["general"], 1

    def render(self, name: str, *, passages: Sequence[Passage], summary: str = "",
               customer: dict | None = None, query: str = "") -> RenderedPrompt:
        template, version = self.get(name)
        return RenderedPrompt(
            system=build_system_prompt(template, passages, summary, customer),
            name=template.name, version=version, hash=template.content_hash(),
            temperature=template.temperature, max_tokens=template.max_tokens,
        )
