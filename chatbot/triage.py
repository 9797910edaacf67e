"""Triage of each customer message: sentiment, trend, priority, escalation and the conversation state.

The rules are documented in docs/triage.md. Everything here runs offline and in
well under a millisecond per message: a support-domain sentiment lexicon, fixed
pattern lists for the escalation triggers, and a small state machine.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatbot.routes import RouteChoice

__all__ = [
    "Sentiment", "analyse_sentiment", "TriageState", "TriageResult", "Triage", "handoff_summary",
    "STATES", "TRANSITIONS", "HANDOFF_NOTICE", "redact",
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

# Intent names of the shipped taxonomy (chatbot/intents.yaml) that the rules treat specially.
GREETING_INTENTS = {"greeting_thanks"}
HUMAN_INTENTS = {"talk_to_human"}
# Points an intent adds to the priority: money, privacy and unhappy customers come first.
INTENT_WEIGHT = {
    "talk_to_human": 2, "complaint": 2, "privacy_data": 2,
    "billing": 1, "refunds": 1, "account_access": 1, "technical_problem": 1, "shipping_orders": 1,
}
SENTIMENT_WEIGHT = {"very_negative": 3, "negative": 2, "neutral": 0, "positive": 0, "very_positive": 0}
TIER_WEIGHT = {"standard": 0, "plus": 1, "premium": 1, "business": 2, "vip": 2}

_I = re.IGNORECASE


def _any(*patterns: str) -> re.Pattern:
    """One case-insensitive pattern matching any of `patterns`."""
    return re.compile("|".join(f"(?:{p})" for p in patterns), _I)


HUMAN_REQUEST = _any(
    r"\b(speak|talk|chat)\w*\s+(to|with)\s+(a\s+|an\s+|your\s+|the\s+|some\s*one\s*)?(real\s+|actual\s+|live\s+)?"
    r"(human|person|agent|manager|supervisor|representative|someone|somebody)\b",
    r"\b(real|actual|live)\s+(human|person|agent)\b",
    r"\bhuman\s+(please|agent|being)\b",
    r"\b(call\s*back|callback|call\s+me)\b",
    r"\b(transfer|put|connect)\s+me\s+(to|through|with)\b",
)
LEGAL_THREAT = _any(
    r"\b(lawyer|attorney|solicitor|sue|suing|lawsuit|legal\s+action|court\s+case|small\s+claims)\b",
    r"\b(take\s+(you|this)\s+to\s+court|trading\s+standards|ombudsman|consumer\s+protection|report\s+you\s+to)\b",
)
_SECRET_THING = r"(card|account|identity|details|credentials|password)"
_MONEY_EVENT = r"(payment|charge|login|purchase|order)"
SECURITY_REPORT = _any(
    r"\b(hack(ed|er|ing)?|fraud\w*|unauthori[sz]ed|scam(med)?|phishing|identity\s+theft|breach|compromised)\b",
    rf"\b(stolen|stole\s+my)\s+{_SECRET_THING}\b",
    rf"\b{_SECRET_THING}\s+(was|were|has\s+been|have\s+been)\s+stolen\b",
    r"\bsomeone\s+(else\s+)?(logged|signed|got)\s+in(to)?\b",
    rf"\b(not|wasn'?t|didn'?t)\s+(me|make|authori[sz]e)\b.{{0,20}}{_MONEY_EVENT}\b",
    rf"\b{_MONEY_EVENT}\b.{{0,40}}\b(was\s*n[o']?t|not)\s+(me|mine|made\s+by\s+me)\b",
    r"\bstrangers?\s+(watching|viewing|talking)\b",
)
_NOT = r"(?:did|does|do|has|have|was|is)\s*n[o'’]?t"
_ADVICE = (r"(?:that|this|those|these|(?:your|the)\s+"
           r"(?:answer|reply|suggestion|advice|steps?|instructions|fix))")
FAILED_ANSWER = _any(
    rf"\b({_ADVICE}|it)\s+{_NOT}\s+help\w*",
    rf"\b{_ADVICE}\s+{_NOT}\s+(work|fix|solve|answer|make\s+sense)\w*",
    r"\bnot\s+what\s+i\s+(asked|meant|need\w*)",
    r"\b(useless|unhelpful|wrong)\s+(answer|reply)",
    r"\byou('re|\s+are)\s+not\s+(helping|listening)",
    r"\balready\s+(tried|did|done)\s+(that|this|it|those|these)",
    r"\bstill\s+(not\s+working|broken|the\s+same|does\s*n[o'’]?t\s+work|won'?t\s+work)",
    r"\bsame\s+(problem|issue)\s+(again|still)",
)
REPEAT_CONTACT = _any(
    r"\b(second|third|fourth|fifth|\d+(st|nd|rd|th))\s+time\b",
    r"\b(several|many|multiple|three|four|five|\d+)\s+times\b",
    r"\bcontacted\s+you\s+(before|already|again)\b",
    r"\balready\s+(contacted|called|emailed|written|chatted)\b",
    r"\bkeep\s+(contacting|calling|asking)\b",
)
_ORDINAL = {"second": 2, "third": 3, "fourth": 4, "fifth": 5, "three": 3, "four": 4, "five": 5,
            "several": 3, "many": 3, "multiple": 3}
CLOSING = _any(r"\b(bye|goodbye|that'?s\s+all|nothing\s+else|all\s+(sorted|good|set)|have\s+a\s+(nice|good)\s+day)\b")


# -- sentiment ------------------------------------------------------------------
# A lexicon tuned to support conversations, scored like VADER (Hutto and Gilbert, 2014):
# word valences from -4 to +4, negation flips and damps, intensifiers and capitals
# amplify, "but" shifts the weight to what follows, exclamation marks add emphasis,
# and the sum is squashed into -1..1.
_LEXICON_TEXT = """
terrible -3 awful -3 horrible -3 worst -3.2 useless -2.5 rubbish -2.5 garbage -2.5 pathetic -3
disgrace -3 disgraceful -3 ridiculous -2.5 unacceptable -3 outrageous -3 appalling -3.2 furious -3.5
angry -3 livid -3.5 annoyed -2 annoying -2 frustrated -2.2 frustrating -2.2 disappointed -2
disappointing -2 unhappy -2 upset -2 hate -3 hated -3 hopeless -2.5 incompetent -3 rude -2.5 scam -3
broken -1.5 fail -1.5 failed -1.5 failing -1.5 failure -1.8 problem -1 problems -1 issue -0.7
issues -0.7 error -0.8 wrong -1.2 bad -2 poor -2 slow -1 late -1 delayed -1 missing -1 lost -1
damaged -1.5 faulty -1.5 defective -1.8 crash -1.5 crashes -1.5 crashed -1.5 stuck -1 worried -1.5
confused -1 confusing -1.2 nightmare -3 disaster -3 waste -2 wasted -2 unfortunately -1 sadly -1
sad -1.5 stupid -2.5 damn -2 bloody -1.5 crap -2.5 shit -3 shitty -3 fuck -3.5 fucking -3.5 wtf -3
ignored -2 ignoring -2 lied -3 lying -3 liar -3 liars -3 cheated -3 overcharged -2 unreliable -2
mess -2 sucks -3 dreadful -3 shocking -2.5 shocked -2 unbelievable -1.5 regret -2 complain -1.5
complaint -1.5 struggling -1.5 impossible -1.5 inconvenient -1.5 inconvenience -1.5 difficult -1
joke -1.5 fraud -2 hacked -2 freezing -1 disgusted -3 embarrassing -2 misleading -2.5 worse -2.2
thanks 1.5 thank 1.5 thx 1.5 ty 1.2 cheers 1.2 great 2.5 good 1.5 excellent 3 amazing 3 awesome 3
perfect 3 brilliant 3 fantastic 3 wonderful 3 love 3 loved 3 happy 2 pleased 2 glad 2 helpful 2
appreciate 2 appreciated 2 works 1 working 0.8 fixed 1.5 sorted 1.2 resolved 1.5 solved 1.5 nice 1.8
lovely 2.5 quick 1 fast 1 easy 1.5 smooth 1.2 recommend 1.5 satisfied 2 impressed 2.5 super 2 kind 1.5
ok 0.4 okay 0.4 fine 0.8 best 2 superb 3 delighted 3 grateful 2.5 legend 2.5 cool 1.3 yay 2
"""
LEXICON = {w: float(v) for w, v in zip(*[iter(_LEXICON_TEXT.split())] * 2)}
# Phrases are scored whole and their words skipped, so "fed up" is not read as "fed" + "up".
PHRASES = {
    "not working": -1.5, "doesn't work": -1.5, "does not work": -1.5, "didn't work": -1.5, "stopped working": -1.8,
    "still not working": -2, "still doesn't work": -2, "still does not work": -2, "still not": -1.2,
    "still waiting": -1.8, "still broken": -2, "waste of time": -2.5, "waste of money": -2.5,
    "fed up": -2.5, "sick of": -2.5, "sick and tired": -3, "had enough": -2.5, "ripped off": -3, "a joke": -2,
    "not happy": -2.2, "not good enough": -2.2, "let down": -2, "for ages": -1, "again and again": -1.5,
    "nobody cares": -2.5, "no one cares": -2.5, "no response": -1.5, "no reply": -1.5, "never again": -2.5,
    "thank you": 2, "many thanks": 2.2, "works now": 2, "working now": 2, "all good": 1.5, "no problem": 0.8,
    "no worries": 0.8, "well done": 2.2, "spot on": 2,
}
_PHRASE_RE = re.compile(r"\b(" + "|".join(re.escape(p) for p in sorted(PHRASES, key=len, reverse=True)) + r")\b")
NEGATIONS = {"not", "no", "never", "without", "hardly", "nothing", "nobody", "none", "neither", "nor", "cannot"}
BOOSTERS = {"very": 0.3, "really": 0.3, "so": 0.3, "extremely": 0.45, "totally": 0.35, "absolutely": 0.45,
            "completely": 0.4, "utterly": 0.45, "incredibly": 0.45, "super": 0.3, "too": 0.2, "most": 0.3}
DAMPERS = {"slightly": -0.3, "somewhat": -0.25, "bit": -0.3, "little": -0.25, "kinda": -0.3, "fairly": -0.2}
EMOJI = {":)": 1.5, ":-)": 1.5, ":D": 2, ":(": -1.5, ":-(": -1.5, "🙂": 1.5, "😊": 2, "😀": 2, "👍": 1.5,
         "❤️": 2.5, "😡": -3, "😠": -2.5, "🤬": -3.5, "👎": -2, "😞": -2, "😢": -2}
_TOKEN_RE = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)?")
LEVELS = ("very_negative", "negative", "neutral", "positive", "very_positive")


@dataclass
class Sentiment:
    """A message's sentiment: a level from very_negative to very_positive and a score in -1..1."""

    level: str
    score: float


def sentiment_level(score: float) -> str:
    """The level of a score: cut at -0.6, -0.15, 0.15 and 0.6."""
    if score <= -0.6:
        return "very_negative"
    if score <= -0.15:
        return "negative"
    if score < 0.15:
        return "neutral"
    if score < 0.6:
        return "positive"
    return "very_positive"


def analyse_sentiment(text: str) -> Sentiment:
    """Score one message offline with the support-domain lexicon (see docs/triage.md)."""
    total = sum(v for e, v in EMOJI.items() if e in text)
    lowered = text.lower().replace("’", "'")
    for match in _PHRASE_RE.finditer(lowered):
        total += PHRASES[match.group(1)]
    lowered = _PHRASE_RE.sub(" ", lowered)
    original = [t for t in _TOKEN_RE.findall(text.replace("’", "'"))]
    shouting = sum(t.isupper() and len(t) > 1 for t in original) / max(1, len(original)) > 0.6
    tokens = _TOKEN_RE.findall(lowered)
    caps = {t.lower() for t in original if t.isupper() and len(t) > 1}
    # "but" moves the weight onto the clause after it.
    pivot = tokens.index("but") if "but" in tokens else -1
    for i, token in enumerate(tokens):
        valence = LEXICON.get(token)
        if valence is None:
            continue
        before = tokens[max(0, i - 3):i]
        scale = 1.0
        for j, word in enumerate(reversed(before[-2:])):
            if word in BOOSTERS:
                scale += BOOSTERS[word] * (1 if j == 0 else 0.8)
            elif word in DAMPERS:
                scale += DAMPERS[word]
        if (token in caps and not shouting) or shouting:
            scale += 0.3
        if any(w in NEGATIONS or w.endswith("n't") for w in before):
            scale *= -0.6
        if pivot >= 0:
            scale *= 0.5 if i < pivot else 1.5
        total += valence * scale
    bangs = min(text.count("!"), 4)
    if total and bangs:
        total += (0.3 if total > 0 else -0.3) * bangs
    score = total / (total * total + 15) ** 0.5
    return Sentiment(level=sentiment_level(score), score=float(score))


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


def sentiment_trend(scores: list[float], window: int = 4, change: float = 0.4) -> str:
    """Direction of the last `window` scores: the least-squares slope times the span, against `change`."""
    recent = scores[-window:]
    if len(recent) < 2:
        return "stable"
    n = len(recent)
    mean_x, mean_y = (n - 1) / 2, sum(recent) / n
    slope = sum((i - mean_x) * (s - mean_y) for i, s in enumerate(recent)) / sum((i - mean_x) ** 2 for i in range(n))
    delta = slope * (n - 1)
    if delta <= -change:
        return "deteriorating"
    if delta >= change:
        return "improving"
    return "stable"


def repeat_contact_count(text: str) -> int:
    """How many contacts the message says this is (0 when it says nothing)."""
    match = REPEAT_CONTACT.search(text)
    if not match:
        return 0
    words = match.group(0).lower().split()
    for word in words:
        digits = re.match(r"\d+", word)
        if digits:
            return max(2, int(digits.group(0)))
        if word in _ORDINAL:
            return _ORDINAL[word]
    return 2


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


_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
# What follows "password is", "PIN:" or "code 1234"; not "error code E42", which helps the agent.
_SECRET = re.compile(
    r"(?<!error )\b(password|passcode|pin|cvv|cvc|code)(?:\s+(?:is|was)\s+|\s*[:=]\s*|\s+(?=\S*\d))\S+", _I
)


def redact(text: str) -> str:
    """The text without card numbers, passwords, PINs or codes the customer typed."""
    text = _CARD.sub("[card number]", text)
    return _SECRET.sub(lambda m: f"{m.group(1)} [redacted]", text)


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
