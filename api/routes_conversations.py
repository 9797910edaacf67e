"""Stored conversations: the list (with filters), one conversation, and handing one to a person."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from api.auth import agent_key
from api.desk import Desk, desk
from api.once import run_once
from api.schemas import HandoffIn
from api.turns import agent_name
from chatbot.access.api_keys import ApiKey
from chatbot.turn.manual_handoff import hand_off

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


@router.get("", summary="Conversations, most recently active first, filtered by text, intent or escalation")
def list_conversations(q: str = Query("", description="Text the messages hold"),
                       intent: str = "", escalated: bool | None = None,
                       limit: int = Query(50, ge=1, le=500),
                       key: ApiKey = Depends(agent_key), the_desk: Desk = Depends(desk)) -> dict:
    found = the_desk.services.store.search(text=q, intent=intent, escalated=escalated, limit=limit)
    return {"conversations": [s.to_dict() for s in found]}


@router.get("/{conversation_id}", summary="One conversation: its summary, triage state and messages")
def get_conversation(conversation_id: str, key: ApiKey = Depends(agent_key), the_desk: Desk = Depends(desk)) -> dict:
    conversation = the_desk.services.store.conversation(conversation_id)
    # Messages leave in their stored form, the same JSON the exports write.
    return {**conversation, "messages": [m.to_stored() for m in conversation["messages"]]}


@router.post("/{conversation_id}/handoff", summary="Hand the conversation to a person: the bot stops replying")
def handoff(conversation_id: str, request: Request, body: HandoffIn | None = None,
            key: ApiKey = Depends(agent_key), the_desk: Desk = Depends(desk)):
    body = body or HandoffIn()  # every field has a default, so no body at all is a handoff too
    return run_once(the_desk, request, key, body.model_dump_json(),
                    lambda: hand_off(the_desk.services.handoff, conversation_id, body.reason, by=agent_name(key)))
