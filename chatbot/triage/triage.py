"""Triage of each customer message: sentiment, trend, priority, escalation and the conversation state.

The rules are documented in docs/triage.md. Everything here runs offline and in
well under a millisecond per message: a support-domain sentiment lexicon, fixed
pattern lists for the escalation triggers, and a small state machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from chatbot.triage.escalation_triggers import (
    CLOSING,
    FAILED_ANSWER,
    HUMAN_REQUEST,
    LEGAL_THREAT,
    SECURITY_REPORT,
    repeat_contact_count,
)
from common.redaction import redact
from chatbot.triage.sentiment import Sentiment, analyse_sentiment, sentiment_level, sentiment_trend

if TYPE_CHECKING:
    from chatbot.routing.routes import RouteChoice

__all__ = [
    "TriageState", "TriageResult", "Triage", "handoff_summary",
    "STATES", "TRANSITIONS", "HANDOFF_NOTICE",
]

# The conversation state machine. "escalated" is left only by a person closing the case.
STATES = ("greeting", "understanding", "resolving", "closing", "closed", "escalated")
TRANSITIONS: dict[str, set[str]] = {
    "greeting": {"greeting", "understanding", "resolving", "closing", "escalated"},
    "understanding": {"understanding", "resolving", "closing", "escalated"},
    "resolving": {"understanding", "resolving", "closing", "escalated"},
    "closing": {"understanding", "resolving", "closing", "closed", "escalated"},
    "closed": {"understanding", "resolving", "closed", "escalated"},
    "escalated": {"escalated", "closed"},
}

HISTORY = 50  # sentiment scores and intents kept per conversation

HANDOFF_NOTICE = (
    "I've passed this conversation to a member of our support team, who will reply here. "
    "I won't send automated answers in the meantime."
)

# Intent names of the shipped taxonomy (chatbot/routing/intents.yaml) that the rules treat specially.
GREETING_INTENTS = {"greeting_thanks"}
HUMAN_INTENTS = {"talk_to_human"}
# Points an intent adds to the priority: money, privacy and unhappy customers come first.
INTENT_WEIGHT = {
    "talk_to_human": 2, "complaint": 2, "privacy_data": 2,
    "billing": 1, "refunds": 1, "account_access": 1, "technical_problem": 1, "shipping_orders": 1,
}
SENTIMENT_WEIGHT = {"very_negative": 3, "negative": 2, "neutral": 0, "positive": 0, "very_positive": 0}
TIER_WEIGHT = {"standard": 0, "plus": 1, "premium": 1, "business": 2, "vip": 2}


@dataclass
class TriageState:
    """Per-conversation triage memory, stored with the conversation (see to_dict/from_dict)."""

    state: str = "greeting"
    sentiment_history: list[float] = field(default_factory=list)
    contact_count: int = 1  # conversations this customer has opened about it, this one included
    failed_answers: int = 0
    escalated: bool = False
    escalation_reason: str = ""
    handoff_summary: str = ""
    customer_tier: str = "standard"
    handoff_announced: bool = False
    intents: list[str] = field(default_factory=list)
    priority: int = 1  # the highest priority of the case so far
    escalation_message: str = ""  # the customer message that triggered the handoff
    # Messages assessed so far: how a turn's additions to the histories are told apart when two
    # turns' changes are merged (chatbot/triage/merge.py).
    assessed: int = 0

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "TriageState":
        """The inverse of `to_dict`; unknown keys are ignored, missing ones take defaults."""
        data = data or {}
        state = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        if state.state not in STATES:
            state.state = "greeting"
        return state

    def move_to(self, new_state: str) -> None:
        """Change state along an allowed transition; anything else is a programming error."""
        if new_state not in TRANSITIONS.get(self.state, set()):
            raise ValueError(f"no transition from {self.state!r} to {new_state!r}")
        self.state = new_state


@dataclass
class TriageResult:
    """What triage decided about one customer message."""

    sentiment: Sentiment
    trend: str  # "improving", "stable" or "deteriorating"
    priority: int  # 1 (lowest) to 10
    escalate: bool  # the conversation is (now or already) with a human
    reasons: list[str]
    state: str
    newly_escalated: bool = False  # this message triggered the handoff: announce it once
    failed_answer: bool = False  # the customer said the last answer did not help

    def to_dict(self) -> dict:
        """A flat JSON-ready dict for the turn's stored metadata (`sentiment` is the level)."""
        data = asdict(self)
        data["sentiment"] = self.sentiment.level
        data["sentiment_score"] = round(self.sentiment.score, 3)
        return data


class Triage:
    """Scores each customer message and moves the conversation's state machine."""

    def __init__(
        self,
        *,
        escalate_priority: int = 8,
        anger_score: float = -0.7,
        failed_answers_limit: int = 2,
        deteriorating_floor: float = -0.3,
    ):
        self.escalate_priority = escalate_priority
        # Sentiment at or below this counts as anger.
        self.anger_score = anger_score
        self.failed_answers_limit = failed_answers_limit
        # A falling trend escalates only once the customer has been unhappy for two messages
        # in a row (their mean at or below this), so one blunt message is not a trend.
        self.deteriorating_floor = deteriorating_floor

    def priority(
        self, sentiment: Sentiment, intent: str, contact_count: int, tier: str, failed_answers: int = 0
    ) -> int:
        """1 + intent (0-2) + sentiment (0-3) + repeat contact (0-2) + tier (0-2) + failed answers (0-2), in 1..10."""
        score = 1
        score += INTENT_WEIGHT.get(intent, 0)
        score += SENTIMENT_WEIGHT.get(sentiment.level, 0)
        score += min(2, max(0, contact_count - 1))
        score += TIER_WEIGHT.get(tier.lower(), 0)
        score += min(2, failed_answers)
        return max(1, min(10, score))

    def record_failed_answer(self, state: TriageState) -> None:
        """Count an answer the customer said did not help (a feedback button, say)."""
        state.failed_answers += 1

    def assess(
        self, text: str, choice: "RouteChoice", state: TriageState, *, customer_tier: str = "standard"
    ) -> TriageResult:
        """Triage one customer message and update `state` (sentiment history, counters, transitions)."""
        state.customer_tier = customer_tier or state.customer_tier
        state.assessed += 1
        sentiment = analyse_sentiment(text)
        # Bounded, so a long conversation's stored state stays small.
        state.sentiment_history = [*state.sentiment_history, round(sentiment.score, 4)][-HISTORY:]
        state.intents = [*state.intents, choice.intent][-HISTORY:]
        trend = sentiment_trend(state.sentiment_history)

        # A complaint about the last answer counts only once the bot has tried to answer.
        failed = bool(FAILED_ANSWER.search(text)) and state.state in ("understanding", "resolving", "closing")
        if failed:
            self.record_failed_answer(state)
        state.contact_count = max(state.contact_count, repeat_contact_count(text))

        priority = self.priority(
            sentiment, choice.intent, state.contact_count, state.customer_tier, state.failed_answers
        )
        state.priority = max(state.priority, priority)

        reasons = self._escalation_reasons(text, choice, state, sentiment, trend, priority)

        newly = False
        if state.escalated:
            pass  # stays with the human; the first reason is kept
        elif reasons:
            state.escalated = True
            state.escalation_reason = "; ".join(reasons)
            state.escalation_message = text[:1000]
            state.move_to("escalated")
            newly = True
        else:
            # After "that didn't help" the bot is still working on the same problem.
            state.move_to("resolving" if failed else self._next_state(state.state, text, choice))
        return TriageResult(
            sentiment=sentiment,
            trend=trend,
            priority=priority,
            escalate=state.escalated,
            reasons=reasons,
            state=state.state,
            newly_escalated=newly,
            failed_answer=failed,
        )

    def _escalation_reasons(self, text: str, choice: "RouteChoice", state: TriageState, sentiment,
                            trend: str, priority: int) -> list[str]:
        """Why a message hands the conversation to a person; empty when nothing does."""
        reasons = []
        if choice.intent in HUMAN_INTENTS or (choice.escalate and not choice.abstained) or HUMAN_REQUEST.search(text):
            reasons.append("human requested")
        if LEGAL_THREAT.search(text):
            reasons.append("legal threat")
        if SECURITY_REPORT.search(text):
            reasons.append("security or fraud report")
        if sentiment.score <= self.anger_score:
            reasons.append("angry customer")
        if priority >= self.escalate_priority:
            reasons.append(f"priority {priority}")
        history = state.sentiment_history
        if trend == "deteriorating" and len(history) >= 3 and sum(history[-2:]) / 2 <= self.deteriorating_floor:
            reasons.append("sentiment deteriorating")
        if state.failed_answers >= self.failed_answers_limit:
            reasons.append(f"{state.failed_answers} answers did not help")
        return reasons

    @staticmethod
    def _next_state(current: str, text: str, choice: "RouteChoice") -> str:
        """The next state of a conversation the bot still handles."""
        if choice.intent in GREETING_INTENTS:
            if current == "greeting":
                return "greeting"
            if current == "closing" and CLOSING.search(text):
                return "closed"
            return "closing" if current in ("resolving", "closing") else current
        if choice.abstained:
            return "understanding"  # the bot still has to find out what the customer needs
        return "resolving"

    def close(self, state: TriageState) -> None:
        """A person (or the customer) ends the conversation; a handoff is resolved, and a later
        message starts a new case with the bot (the last reason and summary stay on record)."""
        state.move_to("closed")
        state.escalated = False
        state.handoff_announced = False
        state.failed_answers = 0
        state.priority = 1

    def announce_handoff(self, state: TriageState) -> str | None:
        """The handoff notice the first time it is due, None afterwards: the bot says it once."""
        if not state.escalated or state.handoff_announced:
            return None
        state.handoff_announced = True
        return HANDOFF_NOTICE


def handoff_summary(state: TriageState, messages: list[dict], max_chars: int = 280) -> str:
    """A short brief for the person taking over: why, who, what it is about, and how it went.

    `messages` are the conversation's messages (dicts with `role` and `content`), oldest
    first. The caller stores the result in `state.handoff_summary`. "First message" is
    the first one that states the problem (greetings skipped). Card numbers, passwords
    and codes are left out.
    """
    customer = [m.get("content", "") for m in messages if m.get("role") == "user" and m.get("content")]
    skip = ("unknown", "other", *GREETING_INTENTS)
    topics = [i for i in dict.fromkeys(state.intents) if i not in skip]
    # The first message that states the problem: aligned with the routed intents when the
    # state holds one per message, else the first message of more than three words.
    aligned = state.intents[-len(customer):] if customer and len(state.intents) >= len(customer) else []
    first = next((m for m, i in zip(customer, aligned) if i not in skip), None)
    first = first or next((m for m in customer if len(m.split()) > 3), customer[0] if customer else "")
    scores = state.sentiment_history
    mood = "no customer messages"
    if scores:
        mood = (f"latest {sentiment_level(scores[-1]).replace('_', ' ')}, lowest "
                f"{sentiment_level(min(scores)).replace('_', ' ')}, trend {sentiment_trend(scores)}")

    def clip(text: str) -> str:
        text = redact(" ".join(text.split()))
        return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"

    lines = [
        f"Escalated: {state.escalation_reason or 'not escalated'}",
        f"Customer: {state.customer_tier} tier, contact #{state.contact_count}, priority {state.priority}/10",
        f"Topics: {', '.join(topics) if topics else 'not identified'}",
        f"Sentiment: {mood}",
        f"Answers that did not help: {state.failed_answers}",
    ]
    if first:
        lines.append(f"First message: {clip(first)}")  # the first that states the problem
    if state.escalation_message and state.escalation_message != first:
        lines.append(f"When escalated: {clip(state.escalation_message)}")
    if customer and customer[-1] not in (first, state.escalation_message):
        lines.append(f"Latest message: {clip(customer[-1])}")
    lines.append(f"Messages so far: {len(customer)} from the customer, {len(messages) - len(customer)} other")
    return "\n".join(lines)
