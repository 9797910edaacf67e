"""Stored conversations: the list (with filters and pages), one conversation, and handing one to a person."""

from __future__ import annotations

import math
from dataclasses import asdict

from fastapi import APIRouter, Depends, Query, Request

from api import errors
from api.auth import agent_key
from api.desk import Desk, desk
from api.once import run_once
from api.schemas import HandoffIn
from api.turns import agent_name
from chatbot.access.api_keys import ApiKey
from chatbot.handoff.queue import HandoffCase
from chatbot.handoff.status import as_shown
from chatbot.routing.routes import UNKNOWN
from chatbot.store.search import search_page
from chatbot.turn.manual_handoff import hand_off
from common.errors import shown

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


def _cursor(given: str) -> tuple[float, str] | None:
    """(`updated`, `id`) of the last conversation of the page before, from the `next_cursor` it gave."""
    if not given:
        return None
    updated, _, conversation = given.partition(":")
    try:
        when = float(updated)
    except ValueError:
        when = math.nan
    if not math.isfinite(when) or not conversation:  # nan, inf: never a time this list gave
        raise errors.invalid_request([f"cursor: not a cursor this list gave, {shown(given)!r} (pass the "
                                      "`next_cursor` of the page before, or leave it out for the first page)"])
    return when, conversation


@router.get("", summary="Conversations, most recently active first, filtered by text, intent or escalation; "
                        "`next_cursor` gives the next page")
def list_conversations(q: str = Query("", description="Text the messages hold"),
                       intent: str = Query("", description="An intent of the router (`unknown`: none matched)"),
                       escalated: bool | None = None,
                       limit: int = Query(50, ge=1, le=500),
                       cursor: str = Query("", description="The `next_cursor` of the page before"),
                       key: ApiKey = Depends(agent_key), the_desk: Desk = Depends(desk)) -> dict:
    services = the_desk.services
    intents = sorted([*services.router.routes, UNKNOWN])
    if intent and intent not in intents:  # a typo would list nothing, as if no conversation had the intent
        raise errors.invalid_request([f"intent: no intent {shown(intent)!r}; the intents are {', '.join(intents)}"])
    # One more than the page: whether another page follows.
    found = search_page(services.store, text=q, intent=intent, escalated=escalated, limit=limit + 1,
                        before=_cursor(cursor))
    page = found.matches[:limit]
    if len(found.matches) > limit:
        after = (page[-1].updated, page[-1].id)
    else:  # a narrow filter can use up the scan before the page fills: go on from where it stopped
        after = found.resume
    return {"conversations": [s.to_dict() for s in page],
            "next_cursor": f"{after[0]!r}:{after[1]}" if after else None}


def _case(case: HandoffCase | None) -> dict | None:
    """The handoff case as the queue holds it (`agent`: who claimed it, or closed or handed it back)."""
    if case is None:
        return None
    return {name: value for name, value in asdict(case).items() if name != "conversation"}


@router.get("/{conversation_id}", summary="One conversation: its summary, triage state, messages with their "
                                          "status, and its handoff case")
def get_conversation(conversation_id: str, key: ApiKey = Depends(agent_key), the_desk: Desk = Depends(desk)) -> dict:
    services = the_desk.services
    conversation = services.store.conversation(conversation_id)
    # Messages leave in their stored form, the same JSON the exports write, with the status the History
    # page shows (the form keeps only `pending`; a message an agent has answered no longer waits).
    messages = [{**m.to_stored(), "status": m.status.value} for m in as_shown(conversation["messages"])]
    return {**conversation, "messages": messages, "handoff_case": _case(services.handoff.case(conversation_id))}


@router.post("/{conversation_id}/handoff", summary="Hand the conversation to a person: the bot stops replying")
def handoff(conversation_id: str, request: Request, body: HandoffIn | None = None,
            key: ApiKey = Depends(agent_key), the_desk: Desk = Depends(desk)):
    body = body or HandoffIn()  # every field has a default, so no body at all is a handoff too
    return run_once(the_desk, request, key, body.model_dump_json(),
                    lambda: hand_off(the_desk.services.handoff, conversation_id, body.reason, by=agent_name(key)))
