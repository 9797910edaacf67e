"""Escalation triggers: the fixed patterns triage looks for in a customer message."""

from __future__ import annotations

import re

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
