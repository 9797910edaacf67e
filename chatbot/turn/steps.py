"""Pieces of a turn that need no Chatbot: the message's checks, the customer context, retrieval, summaries."""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import Any, Iterator, Sequence

from backends.base import Backend
from chatbot.store.messages import HANDOFF
from chatbot.turn.contextual_search import search_in_context
from chatbot.turn.memory import ConversationMemory, extractive_summary
from chatbot.store.outcomes import ANSWER, read_outcome
from chatbot.prompts.library import PromptLibrary
from chatbot.triage.triage import TriageResult, TriageState
from common.errors import BackendError, InputRejected
from common.types import ChatRequest, Passage, Usage
from knowledge.store import KnowledgeBase

log = logging.getLogger(__name__)

def clean_message(text: str, limit: int) -> str:
    """Strip control characters and surrounding space; refuse text over `limit` characters."""
    cleaned = "".join(
        ch for ch in text if ch in "\n\t" or not unicodedata.category(ch).startswith("C")
    ).strip()
    if len(cleaned) > limit:
        raise InputRejected(
            f"This message is {len(cleaned):,} characters long; the limit is {limit:,}. "
            "Shorten it or split it into several messages."
        )
    return cleaned


class FixedReply(Backend):
    """A fixed reply (the handoff notice), streamed like a model's."""

    name = HANDOFF

    def __init__(self, text: str):
        self.text = text

    def stream(self, request: ChatRequest) -> Iterator[str | Usage]:
        for piece in re.findall(r"\S+\s*", self.text):
            yield piece


def customer_messages(memory: ConversationMemory) -> list[str]:
    """The customer's messages in the conversation's memory, oldest first."""
    return [m["content"] for m in memory.messages if m["role"] == "user"]


def customer_context(verdict: TriageResult, triage_state: TriageState) -> dict[str, Any]:
    """What the prompt tells the model about the customer and the conversation so far."""
    return {
        "account tier": triage_state.customer_tier,
        "conversation state": triage_state.state,
        "sentiment": f"{verdict.sentiment.level.replace('_', ' ')}, {verdict.trend}",
        "priority": f"{verdict.priority}/10",
        "earlier contacts about this": triage_state.contact_count - 1,
    }


def retrieve(knowledge: KnowledgeBase, text: str, vector, history: Sequence[str], k: int) -> list[Passage]:
    """The passages for a message in its context; a vector store that fails (busy, changed by another
    process, unreachable) falls back to the keyword index, and that to no passages: never a failed turn."""
    try:
        # A follow-up is searched with the previous message too: retrieval sees what routing sees.
        return search_in_context(knowledge, text, vector, history, k)
    except Exception as exc:  # noqa: BLE001 - the turn goes on without the vector store
        log.warning("Vector search failed (%s: %s); answering from the keyword index", type(exc).__name__, exc)
        knowledge.degraded = str(exc) or type(exc).__name__
    try:
        return knowledge.search(text, k=k, mode="keyword")
    except Exception as exc:  # noqa: BLE001 - nor the keyword index: a reply without passages
        log.warning("Keyword search failed too (%s: %s); replying without passages", type(exc).__name__, exc)
        return []


def summarise(backend: Backend, prompts: PromptLibrary, previous: str, folded: list[dict]) -> str:
    """Old turns folded into the running summary: by the backend where it can summarise, else extractively."""
    if not backend.can_summarise:
        return extractive_summary(previous, folded)
    prompt = prompts.render("summariser", passages=[], summary="")
    transcript = "\n".join(f"{m['role']}: {m['content']}" for m in folded)
    request = ChatRequest(
        system=prompt.system,
        messages=[{"role": "user", "content": f"Summary so far:\n{previous or '(none)'}\n\nNew messages:\n{transcript}"}],
        temperature=prompt.temperature, max_tokens=prompt.max_tokens,
    )
    try:
        pieces = list(backend.stream(request))
    except BackendError:
        # A failed summary must not lose the turn: fall back to the offline method.
        return extractive_summary(previous, folded)
    # So does a summary that is blank, cut off or refused: it would stand for the old turns.
    text = "".join(p for p in pieces if isinstance(p, str))
    stop = next((p.stop_reason for p in pieces if isinstance(p, Usage)), "")
    return text if read_outcome(text, stop) == ANSWER else extractive_summary(previous, folded)
