"""`POST /v1/chat` (a whole turn as JSON) and `POST /v1/chat/stream` (the turn as Server-Sent Events)."""

from __future__ import annotations

import json
from typing import AsyncIterator

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sse_starlette import ServerSentEvent

from api import errors
from api.auth import agent_key
from api.desk import Desk, desk
from api.once import REPLAYED, Claim, run_once
from api.schemas import ChatIn
from api.sse import EventStream
from api.timing import CoreTimer
from api.turns import CLIENT_LEFT, Turn, conversation_id, head, open_turn, result, stop_streaming
from chatbot.access.api_keys import ApiKey

router = APIRouter(prefix="/v1", tags=["chat"])


@router.post("/chat", summary="One turn: the reply with intent, triage, citations, prompt version and usage")
def chat(body: ChatIn, request: Request, key: ApiKey = Depends(agent_key), the_desk: Desk = Depends(desk)):
    timer = CoreTimer()

    def produce() -> dict:
        conversation = conversation_id(the_desk, body.conversation_id, key)
        turn = open_turn(the_desk, key, conversation, body.text, body.customer_tier, timer)
        try:
            turn.consume()
        finally:
            the_desk.turn_ended("chat", turn.reply.meta)
        return result(turn)

    response = run_once(the_desk, request, key, body.model_dump_json(), produce)
    response.headers.update(timer.header())
    return response


class Events:
    """Numbered SSE events, kept so that a retry with the same Idempotency-Key gets them again."""

    def __init__(self) -> None:
        self.sent: list[list] = []

    def event(self, name: str, data: dict) -> ServerSentEvent:
        self.sent.append([name, data])
        return ServerSentEvent(json.dumps(data, ensure_ascii=False), event=name, id=str(len(self.sent)))


async def stream_turn(the_desk: Desk, turn: Turn, claim: Claim) -> AsyncIterator[ServerSentEvent]:
    """meta, then delta events with the text, an `error` event if the reply fails, and always a last `done`."""
    events = Events()
    pieces = iter(turn.reply)
    try:
        yield events.event("meta", head(turn))
        while (piece := await anyio.to_thread.run_sync(next, pieces, None)) is not None:
            yield events.event("delta", {"text": piece})
    except Exception as exc:  # noqa: BLE001 - the stream reports it as an event, then ends properly
        error = errors.describe(exc)
        the_desk.metrics.errors.labels(error.kind).inc()
        yield events.event("error", errors.body(error)["error"])
    except BaseException:
        # The client went away (the task is cancelled): store what arrived, marked interrupted; a
        # retry with its Idempotency-Key replays the events sent, then says why the reply stopped.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(stop_streaming, pieces, turn.reply)
            the_desk.turn_ended("chat_stream", turn.reply.meta)
            events.event("error", errors.body(CLIENT_LEFT)["error"])
            claim.finish(200, {"events": [*events.sent, ["done", result(turn)]]})
        raise
    the_desk.turn_ended("chat_stream", turn.reply.meta)
    done = result(turn)
    yield events.event("done", done)
    claim.finish(200, {"events": events.sent})


async def replay(stored: list[list]) -> AsyncIterator[ServerSentEvent]:
    for number, (name, data) in enumerate(stored, start=1):
        yield ServerSentEvent(json.dumps(data, ensure_ascii=False), event=name, id=str(number))


@router.post("/chat/stream", summary="One turn streamed as Server-Sent Events",
             description="Events: `meta` (conversation, intent, triage, prompt), `delta` ({text}), `error` on "
                         "failure, and always a last `done` with the whole result, its usage and stop reason. "
                         "Each event has an id; a comment ping is sent at least every 15 s.")
def chat_stream(body: ChatIn, request: Request, key: ApiKey = Depends(agent_key), the_desk: Desk = Depends(desk)):
    claim = Claim(the_desk, request, key, body.model_dump_json())
    if claim.stored is not None:
        stored = claim.stored
        if "events" not in stored.body:  # the first request failed before streaming: the same error
            return JSONResponse(stored.body, stored.status, headers={REPLAYED: "true"})
        # The first answer's conversation header too: its meta event names the conversation.
        conversation = stored.body["events"][0][1]["conversation_id"]
        return EventStream(replay(stored.body["events"]), ping=the_desk.ping_seconds,
                                   headers={REPLAYED: "true", "X-Conversation-Id": conversation})
    try:
        conversation = conversation_id(the_desk, body.conversation_id, key)
        turn = open_turn(the_desk, key, conversation, body.text, body.customer_tier)
    except BaseException as exc:
        claim.fail(exc)
        raise
    return EventStream(stream_turn(the_desk, turn, claim), ping=the_desk.ping_seconds,
                               headers={"X-Conversation-Id": conversation})
