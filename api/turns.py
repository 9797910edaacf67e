"""One turn through the API: the conversation id, the metered backend, the Chatbot, and the turn's result."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Iterator

from api.desk import Desk
from api.errors import ApiError
from api.metering import metered_backend
from api.timing import CoreTimer
from backends.base import Backend
from chatbot.access.api_keys import ApiKey
from chatbot.store.analytics import HANDOFF
from chatbot.turn.reply import Reply
from common.errors import ConversationNotFound, shown
from common.types import Stop


FOREIGN_ID_CHARS = 200  # a client's own conversation id (a ticket number, a chat's UUID) is far shorter


@dataclass
class Turn:
    """A turn whose customer message is stored and whose reply is ready to stream."""

    conversation_id: str
    reply: Reply
    fallback: str  # why the offline backend answers instead of the configured one ("" when it does not)
    backend: Backend  # KeyTokens around a backend that spends money
    timer: CoreTimer  # the time spent in the chat core (see api/timing.py)

    def consume(self) -> None:
        """Run the reply to its end (it is stored), timed as the core's work."""
        with self.timer.span():
            self.reply.consume()
        self.timer.exclude(getattr(self.backend, "key_ms", 0.0))  # holding and counting the key's tokens


def agent_name(key: ApiKey) -> str:
    """How the store records who wrote a turn sent with `key`."""
    return f"api:{key.name}"


def conversation_id(desk: Desk, given: str | None, key: ApiKey, *, foreign: bool = False) -> str:
    """The stored conversation for an id from a client: a new one when none is given.

    An id the store holds is used as it is. Without `foreign`, one of the store's form that it does
    not hold raises ConversationNotFound (404), and one the store cannot hold is refused with 422.
    With `foreign`, any other id is a client's own (Open WebUI's chat id, a help desk's ticket
    number), even one that looks like the store's: it maps to a stable id of the store's form per
    key, so two keys sending the same ticket number never share a conversation.
    """
    store = desk.services.store
    if not given:
        return store.new_id()
    given = given.strip()
    if store.accepts(given) and store.exists(given):
        return given
    if not foreign and store.accepts(given):  # a typo or an expired id must not start a stranger's thread
        raise ConversationNotFound(f"No conversation {shown(given)}: it was deleted, expired or never existed; "
                                   "leave conversation_id out to start a new one.")
    if foreign and 0 < len(given) <= FOREIGN_ID_CHARS:
        return hashlib.sha256(f"{key.key_id}:{given}".encode()).hexdigest()[:16]
    if foreign:
        raise ApiError(422, "invalid_conversation_id", f"X-Conversation-Id must be 1 to {FOREIGN_ID_CHARS} "
                                                       f"characters; this one has {len(given):,}.")
    raise ApiError(422, "invalid_conversation_id",
                   "conversation_id must be an id this desk made (16 hex characters) or one it holds.")


def open_turn(desk: Desk, key: ApiKey, conversation: str, text: str, tier: str = "standard",
              timer: CoreTimer | None = None) -> Turn:
    """Store the customer's message and prepare the reply (steps 1-5 of a turn); the core's time goes on `timer`."""
    backend, fallback = metered_backend(desk, key, conversation)
    bot = desk.services.build_chatbot(backend)
    timer = timer or CoreTimer()
    with timer.span():
        reply = bot.send(conversation, text, customer={"tier": tier}, agent=agent_name(key))
    if reply is None:
        raise ApiError(422, "empty_message", "The message is empty: send some text.")
    return Turn(conversation, reply, fallback, backend, timer)


# What a retry of a stream whose client went away is told, after the events the first one was sent
# (499: nginx's "client closed request"; it is never a response's status, only the event's kind).
CLIENT_LEFT = ApiError(499, "client_disconnected", "The client disconnected during the stream: the reply "
                       "was cut off there and stored as interrupted.")


def stop_streaming(pieces: Iterator[str], reply: Reply) -> None:
    """End a reply whose client went away: stored with what arrived, marked interrupted, even when no
    piece was asked for yet. Blocking (run it on a worker thread)."""
    for _ in range(3000):  # the thread a cancelled `next(pieces)` ran on may still be in it
        try:
            pieces.close()
            break
        except ValueError:  # "generator already executing"
            time.sleep(0.01)
    reply.close()  # does nothing when closing the stream already ended the reply


def usage(meta) -> dict:
    return {"input_tokens": meta.input_tokens, "output_tokens": meta.output_tokens,
            "total_tokens": meta.input_tokens + meta.output_tokens}


def head(turn: Turn) -> dict:
    """What is known before the reply streams: the conversation, intent, triage and prompt."""
    meta = turn.reply.meta
    return {
        "conversation_id": turn.conversation_id,
        "intent": meta.route,
        "triage": meta.triage,
        "handed_off": meta.backend == HANDOFF,
        "prompt": {"name": meta.prompt_name, "version": meta.prompt_version, "hash": meta.prompt_hash},
        "backend": meta.backend,
        "model": meta.model,
        "fallback": turn.fallback or None,
    }


def stop_reason(turn: Turn) -> str:
    """Why the reply ended: the backend's word (a common.types.Stop value), else "error" for a failed
    reply, "handoff" when a person has the conversation, "end_turn" for one that simply ended (the
    offline backend says nothing)."""
    meta = turn.reply.meta
    if meta.error:
        return "error"
    if meta.backend == HANDOFF:
        return "handoff"
    return meta.stop_reason or Stop.END


def result(turn: Turn) -> dict:
    """The whole turn once its reply ended: the reply, its citations, usage, stop reason and timings."""
    meta = turn.reply.meta
    return {
        **head(turn),
        "reply": turn.reply.text,
        "outcome": meta.outcome,
        "stop_reason": stop_reason(turn),
        "citations": meta.sources,
        "usage": usage(meta),
        "latency_ms": round(meta.latency_ms, 2),
        "ttft_ms": round(meta.ttft_ms, 2),
        "error": meta.error or None,
        "interrupted": meta.interrupted,
    }
