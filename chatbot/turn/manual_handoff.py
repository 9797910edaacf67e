"""Handing a conversation to a person on request (an agent, a help desk), not because triage said so.

The same handoff as triage's: the notice in the conversation, the triage state escalated, and a
case in the handoff queue (chatbot/handoff/queue.py) where an agent claims and answers it.
"""

from __future__ import annotations

import time

from chatbot.handoff.queue import HandoffQueue, escalation_of
from chatbot.store.messages import HANDOFF
from chatbot.triage.triage import HANDOFF_NOTICE, TriageState, handoff_summary
from chatbot.webhooks.events import CONVERSATION_ESCALATED
from common.errors import ConversationNotFound, shown


def hand_off(queue: HandoffQueue, conversation_id: str, reason: str, *, by: str) -> dict:
    """Escalate a stored conversation: the bot says so once and drafts no more replies.

    Writes the handoff notice (an assistant message, backend "handoff") with the reason and a brief
    for the person taking over, and the conversation's triage state as escalated, in one atomic
    store write merged onto the state as stored then (a turn ending later keeps the handoff), and
    opens the conversation's case in the handoff queue. Returns {"conversation_id", "escalated",
    "already", "reason", "handoff_summary"}; a conversation already escalated is left as it is
    (`already` true). Raises ConversationNotFound for an unknown id and StoreUnavailable when the
    store cannot be reached.
    """
    store = queue.store
    if not store.exists(conversation_id):
        raise ConversationNotFound(f"No conversation {shown(conversation_id)}: it was deleted, expired or never existed.")
    triage = TriageState.from_dict(store.state(conversation_id).get("triage"))
    if triage.escalated:
        return {"conversation_id": conversation_id, "escalated": True, "already": True,
                "reason": triage.escalation_reason, "handoff_summary": triage.handoff_summary}
    reason = " ".join(reason.split())[:300] or "handoff requested"
    messages = store.messages(conversation_id)
    # Triage's verdict on the latest customer message, as an automatic handoff records it; the
    # conversation's priority so far when no message was triaged.
    latest = next((m.meta.triage for m in reversed(messages) if m.meta is not None and m.meta.sentiment),
                  {"priority": triage.priority})
    last = next((m.content for m in reversed(messages) if m.is_user), "")
    triage.escalated, triage.handoff_announced = True, True
    triage.escalation_reason = f"{reason} (by {by})"
    triage.state = "escalated"
    triage.handoff_summary = handoff_summary(triage, [m.as_chat() for m in messages])
    escalation = escalation_of(latest, brief=triage.handoff_summary, message=last, reasons=[reason])
    # The notice's triage carries the sentiment and priority too: the conversation's summary keeps
    # them as its escalation's (chatbot/store/analytics.py, `summary_fields`).
    meta = {"backend": HANDOFF, "model": "", "session_id": conversation_id, "agent": by, "created_at": time.time(),
            "triage": {"escalate": True, "newly_escalated": True, "reasons": [reason], "state": "escalated",
                       "sentiment": escalation["sentiment"], "priority": escalation["priority"],
                       "handoff_summary": triage.handoff_summary, "requested_by": by}}
    store.append(conversation_id, [{"role": "assistant", "content": HANDOFF_NOTICE, "meta": meta}],
                 update=lambda current: _escalated(current, triage), agent=by)
    queue.escalate(conversation_id, **escalation)
    queue.events(CONVERSATION_ESCALATED, {"conversation_id": conversation_id, **escalation,
                                          "notice": HANDOFF_NOTICE, "requested_by": by})
    return {"conversation_id": conversation_id, "escalated": True, "already": False,
            "reason": triage.escalation_reason, "handoff_summary": triage.handoff_summary}


def _escalated(current: dict, requested: TriageState) -> dict:
    """The state as stored now with the requested handoff in it; one escalated meanwhile keeps its own words."""
    triage = TriageState.from_dict(current.get("triage"))
    if not triage.escalated:
        triage.escalation_reason, triage.handoff_summary = requested.escalation_reason, requested.handoff_summary
    triage.escalated, triage.handoff_announced, triage.state = True, True, "escalated"
    return {**current, "triage": triage.to_dict()}

