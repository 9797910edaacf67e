"""Chatwoot's agent-bot events: the fields the desk reads, checked with pydantic before anything is recorded.

A signed event is still data from outside. An id that is a float (`1e400` is infinity once parsed,
`NaN` parses too), a bool, a string or past Postgres' bigint, or a list where an object belongs,
is refused with the field's path (`account.id`), so that the webhook answers 400 naming it instead
of failing halfway through. Only the fields the desk reads are checked, and only in the events it
acts on; a field that is absent or null means "not there", as before.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import ChatbotError

MESSAGE_CREATED = "message_created"
STATUS_CHANGED = "conversation_status_changed"

# Chatwoot's ids are Postgres bigints; strict: JSON integers only (no float, bool or string).
ChatwootId = Annotated[int, Field(strict=True, ge=1, le=2**63 - 1)]
Text = Annotated[str, Field(strict=True)]


class ChatwootEventError(ChatbotError):
    """A signed event whose fields are not of Chatwoot's types; `fields` names each one ("account.id")."""

    def __init__(self, message: str, fields: list[str]):
        super().__init__(message)
        self.fields = fields


class _Shape(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class Account(_Shape):
    id: ChatwootId | None = None


class Message(_Shape):
    """One of a conversation's messages, in a conversation event."""
    account_id: ChatwootId | None = None


class Conversation(_Shape):
    id: ChatwootId | None = None
    status: Text | None = None
    messages: list[Message | None] | None = None


class _Kind(_Shape):
    event: Text | None = None


class MessageCreated(_Shape):
    """`message_created`: `id` is the message's."""
    event: Text
    id: ChatwootId | None = None
    message_type: Text | None = None
    private: bool | None = None
    content: Text | None = None
    account: Account | None = None
    conversation: Conversation | None = None


class StatusChanged(_Shape):
    """`conversation_status_changed`: Chatwoot sends the conversation's own fields at the top level (`id`
    is the conversation's), the account as `account.id`, else `account_id` there or on its messages."""
    event: Text
    id: ChatwootId | None = None
    status: Text | None = None
    account: Account | None = None
    account_id: ChatwootId | None = None
    messages: list[Message | None] | None = None
    conversation: Conversation | None = None


EVENTS: dict[str, type[_Shape]] = {MESSAGE_CREATED: MessageCreated, STATUS_CHANGED: StatusChanged}


def _checked(model: type[_Shape], payload: dict[str, Any]) -> Any:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        problems = {".".join(str(part) for part in error["loc"]): error["msg"] for error in exc.errors()}
        said = "; ".join(f"{field}: {why}" for field, why in problems.items())
        raise ChatwootEventError(f"The event is not in Chatwoot's shape: {said}.", list(problems)) from None


def read_event(payload: dict[str, Any]) -> MessageCreated | StatusChanged | None:
    """The event, checked, when it is one the desk acts on; None for any other event.

    Raises ChatwootEventError naming every field the desk reads that is not of Chatwoot's type.
    """
    model = EVENTS.get(_checked(_Kind, payload).event or "")
    return _checked(model, payload) if model is not None else None
