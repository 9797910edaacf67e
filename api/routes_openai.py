"""An OpenAI-compatible face: `GET /v1/models` and `POST /v1/chat/completions`, streamed or not.

The OpenAI SDK and Open WebUI use the desk as a model named `support-desk`: the last user
message is the turn (the earlier ones are the stored conversation's, not re-sent to the model),
answered with the knowledge base, routing, triage and citations. `X-Conversation-Id` (or Open
WebUI's `X-OpenWebUI-Chat-Id`) picks the stored conversation; without one each request starts a
new conversation, whose id comes back in the `X-Conversation-Id` response header. Replies carry
the desk's extras beside OpenAI's fields: `conversation_id`, `citations`, `intent`, `triage`.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, AsyncIterator, Literal

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field, StrictBool
from sse_starlette import ServerSentEvent

from api import errors
from api.auth import agent_key
from api.desk import Desk, desk
from api.errors import ApiError
from api.once import REPLAYED, Claim, run_once
from api.schemas import Body
from api.sse import EventStream
from api.timing import CoreTimer
from api.turns import CLIENT_LEFT, Turn, conversation_id, head, open_turn, result, stop_streaming
from chatbot.access.api_keys import ApiKey
from chatbot.triage.triage import HANDOFF_NOTICE
from common.errors import shown
from common.types import Stop

router = APIRouter(prefix="/v1", tags=["openai-compatible"])
CONVERSATION_HEADERS = ("X-Conversation-Id", "X-OpenWebUI-Chat-Id")
FINISH = {Stop.LENGTH: "length", Stop.REFUSAL: "content_filter"}


class Message(Body):
    model_config = ConfigDict(extra="allow")
    # OpenAI's roles: any but the last message's is read past (the stored conversation is the memory).
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(Body):
    model_config = ConfigDict(extra="allow")
    include_usage: StrictBool = False


class CompletionIn(Body):
    """OpenAI's chat completion request; fields the desk has no use for (temperature...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[Message] = Field(..., min_length=1)
    stream: StrictBool = False  # as OpenAI's API: "yes" or 1 is no boolean
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="Choices to generate: the desk answers one turn, so only 1.")


def _text(message: Message) -> str:
    if isinstance(message.content, list):  # content parts: keep the text ones
        return "\n".join(str(p.get("text", "")) for p in message.content if p.get("type") == "text")
    return message.content or ""


def _customer_text(body: CompletionIn) -> str:
    last = body.messages[-1]
    # An earlier user message is already stored: answering it again would store it twice.
    if last.role != "user":
        raise ApiError(422, "invalid_request", f"messages: the last message has the role {last.role!r}; it must be "
                                               "the customer's new message (role 'user').", fields=["messages"])
    if not _text(last).strip():
        raise ApiError(422, "invalid_request", "messages: the last user message holds no text.", fields=["messages"])
    return _text(last)


@router.get("/models", summary="The desk as a model (OpenAI's list format)")
def models(key: ApiKey = Depends(agent_key), the_desk: Desk = Depends(desk)) -> dict:
    return {"object": "list", "data": [{"id": the_desk.model_id, "object": "model", "created": 0,
                                        "owned_by": "support-desk"}]}


def _open(the_desk: Desk, request: Request, body: CompletionIn, key: ApiKey, timer: CoreTimer | None = None) -> Turn:
    if body.model != the_desk.model_id:
        raise ApiError(404, "model_not_found",
                       f"The model {shown(body.model)!r} does not exist; use {the_desk.model_id!r}.")
    given = next((request.headers[h] for h in CONVERSATION_HEADERS if request.headers.get(h)), None)
    conversation = conversation_id(the_desk, given, key, foreign=True)
    return open_turn(the_desk, key, conversation, _customer_text(body), timer=timer)


def _content(reply: str, handed_off: bool) -> str:
    """The reply as a chat UI shows it: a conversation with a person gets no reply from the desk after
    its handoff notice, and an empty message would show as a blank bubble (Open WebUI), so it says
    again what the notice said."""
    return reply if reply or not handed_off else HANDOFF_NOTICE


def _extras(done: dict) -> dict:
    return {"conversation_id": done["conversation_id"], "citations": done["citations"], "intent": done["intent"],
            "triage": done["triage"], "prompt": done["prompt"], "fallback": done["fallback"]}


def _usage(done: dict) -> dict:
    u = done["usage"]
    return {"prompt_tokens": u["input_tokens"], "completion_tokens": u["output_tokens"],
            "total_tokens": u["total_tokens"]}


@router.post("/chat/completions", summary="OpenAI-compatible chat completion (stream or not)")
def chat_completions(body: CompletionIn, request: Request, key: ApiKey = Depends(agent_key),
                     the_desk: Desk = Depends(desk)):
    if body.stream:
        return _stream(the_desk, request, body, key)
    timer = CoreTimer()

    def produce() -> dict:
        turn = _open(the_desk, request, body, key, timer)
        try:
            turn.consume()
        finally:
            the_desk.turn_ended("chat_completions", turn.reply.meta)
        done = result(turn)
        message = {"role": "assistant", "content": _content(done["reply"], done["handed_off"]), "refusal": None}
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                "model": the_desk.model_id, "system_fingerprint": None,
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": FINISH.get(done["stop_reason"], "stop")}],
                "usage": _usage(done), **_extras(done)}

    response = run_once(the_desk, request, key, body.model_dump_json(), produce)
    conversation = json.loads(response.body).get("conversation_id")
    if conversation:
        response.headers["X-Conversation-Id"] = conversation
    response.headers.update(timer.header())
    return response


def _stream(the_desk: Desk, request: Request, body: CompletionIn, key: ApiKey):
    claim = Claim(the_desk, request, key, body.model_dump_json())
    if claim.stored is not None:
        if "chunks" not in claim.stored.body:
            return JSONResponse(claim.stored.body, claim.stored.status, headers={REPLAYED: "true"})
        chunks = claim.stored.body["chunks"]
        # The first chunk names the conversation, as the first answer's header did (none if cut off before it).
        named = [c["conversation_id"] for c in chunks if isinstance(c, dict) and c.get("conversation_id")]
        return EventStream(_replay(chunks), sep="\n", ping=the_desk.ping_seconds,
                                   headers={REPLAYED: "true", **({"X-Conversation-Id": named[0]} if named else {})})
    try:
        turn = _open(the_desk, request, body, key)
    except BaseException as exc:
        claim.fail(exc)
        raise
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return EventStream(_chunks(the_desk, turn, claim, include_usage), sep="\n", ping=the_desk.ping_seconds,
                               headers={"X-Conversation-Id": turn.conversation_id})


async def _replay(chunks: list) -> AsyncIterator[ServerSentEvent]:
    for chunk in chunks:
        yield ServerSentEvent(chunk if isinstance(chunk, str) else json.dumps(chunk, ensure_ascii=False))


async def _chunks(the_desk: Desk, turn: Turn, claim: Claim, include_usage: bool) -> AsyncIterator[ServerSentEvent]:
    """OpenAI's chunk stream: the role, content deltas, the finish reason, usage if asked, then `[DONE]`."""
    cid, created, model = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), the_desk.model_id
    extra = {"usage": None} if include_usage else {}
    sent: list = []

    def chunk(delta: dict | None, finish: str | None = None, **fields) -> ServerSentEvent:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": None, "choices": choices, **extra, **fields}
        sent.append(data)
        return ServerSentEvent(json.dumps(data, ensure_ascii=False))

    pieces = iter(turn.reply)
    try:
        yield chunk({"role": "assistant", "content": ""}, conversation_id=turn.conversation_id)
        while (piece := await anyio.to_thread.run_sync(next, pieces, None)) is not None:
            yield chunk({"content": piece})
        if not turn.reply.text and (notice := _content("", head(turn)["handed_off"])):
            yield chunk({"content": notice})
    except Exception as exc:  # noqa: BLE001 - OpenAI's way: an error object in the stream, then the end
        error = errors.describe(exc)
        the_desk.metrics.errors.labels(error.kind).inc()
        sent.append(errors.body(error))
        yield ServerSentEvent(json.dumps(errors.body(error), ensure_ascii=False))
    except BaseException:  # the client went away: as in api/routes_chat.py
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(stop_streaming, pieces, turn.reply)
            the_desk.turn_ended("chat_completions", turn.reply.meta)
            claim.finish(200, {"chunks": [*sent, errors.body(CLIENT_LEFT), "[DONE]"]})
        raise
    the_desk.turn_ended("chat_completions", turn.reply.meta)
    done = result(turn)
    if not done["error"]:
        yield chunk({}, FINISH.get(done["stop_reason"], "stop"), **_extras(done))
        if include_usage:
            yield chunk(None, usage=_usage(done))
    sent.append("[DONE]")
    claim.finish(200, {"chunks": sent})
    yield ServerSentEvent("[DONE]")
