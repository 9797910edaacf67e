"""Handing a conversation to a person on request (an agent, a help desk), not because triage said so."""

from __future__ import annotations

import time

from chatbot.store.analytics import HANDOFF
from chatbot.store.conversations import ConversationStore
from chatbot.triage.triage import HANDOFF_NOTICE, TriageState, handoff_summary
from common.errors import ConversationNotFound


def hand_off(store: ConversationStore, conversation_id: str, reason: str, *, by: str) -> dict:
    """Escalate a stored conversation: the bot says so once and drafts no more replies.

    Writes the handoff notice (an assistant message, backend "handoff") with the reason and a brief
    for the person taking over, and the conversation's triage state as escalated, in one atomic
    store write. Returns {"conversation_id", "escalated", "already", "reason", "handoff_summary"};
    a conversation already escalated is left as it is (`already` true). Raises ConversationNotFound
    for an unknown id and StoreUnavailable when the store cannot be reached.
    """
    if not store.exists(conversation_id):
        raise ConversationNotFound(f"No conversation {conversation_id}: it was deleted, expired or never existed.")
    state = store.state(conversation_id)
    triage = TriageState.from_dict(state.get("triage"))
    if triage.escalated:
        return {"conversation_id": conversation_id, "escalated": True, "already": True,
                "reason": triage.escalation_reason, "handoff_summary": triage.handoff_summary}
    reason = " ".join(reason.split())[:300] or "handoff requested"
    triage.escalated, triage.handoff_announced = True, True
    triage.escalation_reason = f"{reason} (by {by})"
    triage.state = "escalated"
    triage.handoff_summary = handoff_summary(triage, [m.as_chat() for m in store.messages(conversation_id)])
    meta = {"backend": HANDOFF, "model": "", "session_id": conversation_id, "agent": by, "created_at": time.time(),
            "triage": {"escalate": True, "reasons": [reason], "state": "escalated", "priority": triage.priority,
                       "handoff_summary": triage.handoff_summary, "requested_by": by}}
    store.append(conversation_id, [{"role": "assistant", "content": HANDOFF_NOTICE, "meta": meta}],
                 {**state, "triage": triage.to_dict()}, agent=by)
    return {"conversation_id": conversation_id, "escalated": True, "already": False,
            "reason": triage.escalation_reason, "handoff_summary": triage.handoff_summary}
