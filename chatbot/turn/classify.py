"""One message classified the way a turn would (intent, sentiment, priority, escalation), with no reply and nothing stored."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from chatbot.triage.triage import TriageState
from chatbot.turn.bot import UNROUTED, Chatbot
from chatbot.turn.steps import clean_message
from common.redaction import redact


@dataclass
class Classification:
    """What triage made of one message: the router's choice with its scores, and the triage verdict."""

    text: str
    route: dict
    triage: dict

    def to_dict(self) -> dict:
        return {"text": self.text, "route": self.route, "triage": self.triage}


def classify(bot: Chatbot, text: str, *, customer_tier: str = "standard",
             conversation_id: str = "") -> Classification | None:
    """Route and triage `text` as the next message of `conversation_id` (a new conversation when empty).

    The same steps as a turn's 1-3 (validation and redaction, embedding, routing with the
    conversation's earlier messages, triage with its state), on a copy of the state: nothing is
    written. Returns None for an empty message; raises InputRejected over the length limit and
    StoreUnavailable when the conversation cannot be read.
    """
    text = redact(clean_message(text, bot.max_message_chars))
    if not text:
        return None
    stored = bot.store.state(conversation_id) if conversation_id else {}
    memory = bot._memory(stored)
    state = TriageState.from_dict(copy.deepcopy(stored.get("triage")))
    vector = bot.knowledge.embedder.embed_one(text)
    choice = bot.route(text, vector, memory)
    verdict = bot.triage.assess(text, choice or UNROUTED, state, customer_tier=customer_tier)
    triage = verdict.to_dict()
    triage["escalation_reason"] = state.escalation_reason if state.escalated else ""
    return Classification(text=text, route=(choice or UNROUTED).to_dict(), triage=triage)
