"""Merging one turn's triage changes into a conversation state that other turns changed meanwhile.

Two tabs (or an API client and a tab) can run turns on one conversation at once: turn A reads the
state, turn B reads the same state, B hands the conversation off and is stored, then A's older
reply ends. Writing A's state over B's would undo the handoff. Instead A's changes (what it did
to the state it read, `base` -> `mine`) are replayed onto the state stored now (`current`), a
three-way merge field by field:

- a field the turn did not change keeps the current value; one only the turn changed takes it;
- changed by both: the per-field rule below: histories are appended to, counters add up,
  highest-so-far fields keep the highest, the first escalation's reason and brief are kept,
  and any other field takes the value of the turn that started later (`later`).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from chatbot.triage.triage import HISTORY, TriageState

# Lists each assessed message appends one item to (bounded to HISTORY).
APPENDED = ("sentiment_history", "intents")
# Counters: both turns' increments count.
ADDED = ("failed_answers",)
# Highest so far.
HIGHEST = ("contact_count", "priority")
# Written when the conversation is handed off: the first handoff's words stay on record.
FIRST = ("escalation_reason", "escalation_message", "handoff_summary")


def _both_changed(name: str, base: Any, mine: Any, current: Any, later: bool) -> Any:
    if name in HIGHEST:
        return max(current, mine)
    if name in FIRST:
        return current if current else mine
    return mine if later else current


def merge_triage(base: TriageState, mine: TriageState, current: TriageState, *, later: bool) -> TriageState:
    """`current` with the changes one turn made from `base` to `mine`; `later` is True when that
    turn started after the one that stored `current`. Nothing is mutated."""
    added = max(0, mine.assessed - base.assessed)
    merged: dict[str, Any] = {}
    for spec in fields(TriageState):
        name = spec.name
        b, m, c = getattr(base, name), getattr(mine, name), getattr(current, name)
        if name in APPENDED:
            merged[name] = ([*c, *m[len(m) - min(added, len(m)):]] if added else list(c))[-HISTORY:]
        elif name == "assessed":
            merged[name] = c + added
        elif name in ADDED:  # equal values from both turns are two increments, not one
            merged[name] = max(0, c + (m - b))
        elif m == b or m == c:
            merged[name] = c
        elif c == b:
            merged[name] = m
        else:
            merged[name] = _both_changed(name, b, m, c, later)
    state = TriageState(**merged)
    # The state machine follows the handoff flag: escalated is left only by a person closing it.
    if state.escalated:
        state.state = "escalated"
    elif state.state == "escalated":
        state.state = current.state if current.state != "escalated" else mine.state
    return state
