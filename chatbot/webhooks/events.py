"""The events the desk sends to webhook endpoints, and the shape of each payload.

A payload is the Standard Webhooks envelope (https://www.standardwebhooks.com/, "Payload
structure"): `{"type": "message.created", "timestamp": "2026-12-06T10:00:00.000000Z", "data": {...}}`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

CONVERSATION_ESCALATED = "conversation.escalated"
MESSAGE_CREATED = "message.created"
REPLY_COMPLETED = "reply.completed"
FEEDBACK_RECEIVED = "feedback.received"
TEST = "webhook.test"  # sent by the admin page's "Send a test event"; every endpoint receives it
EVENTS = {
    CONVERSATION_ESCALATED: "a conversation was handed to a person (its brief, reasons, sentiment and priority)",
    MESSAGE_CREATED: "a customer or a human agent wrote a message",
    REPLY_COMPLETED: "the assistant's reply to a message finished (outcome, intent, usage)",
    FEEDBACK_RECEIVED: "an agent rated a reply (thumbs up or down, a comment)",
}

# Whoever emits an event calls this: (event type, data). The webhook dispatcher is one.
EventSink = Callable[[str, dict], None]


def ignore_event(event_type: str, data: dict) -> None:
    """The sink of a desk without webhooks."""


def envelope(event_type: str, data: dict, now: datetime | None = None) -> dict:
    """The payload of one event: type, ISO 8601 UTC timestamp and data."""
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return {"type": event_type, "timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "data": data}
