"""Sending a failed turn's message again: the same stored message becomes pending once more.

Kept beside the store's turn writes (`ConversationStore._write_turn`), apart from the store class so
each stays small. No second copy of the message is stored: the turn's reply lands under it.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from chatbot.store.messages import STALE_TEXT, Message, Status

if TYPE_CHECKING:
    from chatbot.store.conversations import ConversationStore


def _counted_failed(message: Message) -> bool:
    """Whether the summary counts the message as a failed turn: it finished without a reply.

    A turn whose process stopped was never finished (stored pending; `settle` reads it as interrupted
    with STALE_TEXT), so no failure was counted for it.
    """
    stale = message.status is Status.INTERRUPTED and message.meta is not None and message.meta.error == STALE_TEXT
    return message.failed and not stale


def retry_turn(store: "ConversationStore", session_id: str, turn: str, *, agent: str = "") -> dict | None:
    """The stored message of `turn` sent again, pending once more; returned as `begin_turn` returns one.

    None when the conversation holds no customer message of that turn that got no reply (then the
    caller begins a new turn). A failure counted for the turn is taken back: the retry's own end counts.
    Raises StoreUnavailable as the store's reads and writes do.
    """
    messages = store.messages(session_id)
    at = next((i for i, m in enumerate(messages) if m.turn == turn and m.is_user), None)
    if at is None or messages[at].meta is None or not messages[at].meta.no_reply:
        return None
    again = Message(role=messages[at].role, content=messages[at].content, ts=store.clock(), turn=turn,
                    status=Status.PENDING)
    stored = again.to_stored()
    store._write_turn(session_id, [], None, agent, uuid.uuid4().hex, replaces=stored, where=at,
                      started=again.ts, adjust={"failed": -1} if _counted_failed(messages[at]) else None)
    return {**stored, "at": at}
