"""Chatwoot's agent bot: its signed webhook in, the assistant's reply and the handoff out through its API.

The incoming side (the HTTP endpoint in `api/webhooks_in.py`) only checks and queues: the
signature (`verify_signature`), the event's fields (`job_for`, `chatwoot_events.py`), the delivery
id (`first_delivery`), then `queue_job`. The reply is computed by the worker (`answer`) and posted
back (`post_reply`), so Chatwoot's webhook is acknowledged at once. Chatwoot's API:
POST /api/v1/accounts/{account}/conversations/{id}/messages and .../toggle_status, authenticated
by the bot's `api_access_token` header (https://www.chatwoot.com/developers/api/).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from typing import Any, Callable

import httpx
import redis
from rq import Retry

from chatbot.helpdesk.chatwoot_events import Conversation, MessageCreated, StatusChanged, read_event
from chatbot.store.jobs import job_queue
from common.errors import ChatbotError, ConfigurationError

log = logging.getLogger(__name__)
SIGNATURE_TOLERANCE = 300  # seconds a signed timestamp stays valid (replays of older deliveries are refused)
DELIVERY_TTL = 86400  # a delivery id is remembered a day: Chatwoot's retries come within minutes
REQUEST_TIMEOUT = 10.0  # seconds for one call to Chatwoot's API
# Posting a reply is retried (the reply itself is not recomputed): after 5 s, 1 min, 5 min.
POST_RETRY = Retry(max=3, interval=[5, 60, 300])
HANDOFF_STATUS = "open"  # a conversation "open" in Chatwoot is with the human agents, "pending" with the bot


class ChatwootSignatureError(ChatbotError):
    """The webhook's signature or timestamp does not check out: it was not sent by our Chatwoot.

    `problem` names which check failed: "missing_signature", "invalid_signature",
    "invalid_timestamp" (missing or not a number) or "stale_timestamp".
    """

    def __init__(self, message: str, problem: str = "invalid_signature"):
        super().__init__(message)
        self.problem = problem


class ChatwootError(ChatbotError):
    """Chatwoot's API refused or did not answer a call."""


def signature_for(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=` and the hex HMAC-SHA256 of `{timestamp}.{body}`, keyed by the webhook secret."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, body: bytes, timestamp: str, signature: str, now: float) -> None:
    """Check X-Chatwoot-Signature against the body and X-Chatwoot-Timestamp (epoch seconds).

    Raises ConfigurationError without a secret, ChatwootSignatureError for a missing, stale or wrong signature.
    """
    if not secret:
        raise ConfigurationError("Chatwoot webhooks cannot be checked: set CHATWOOT_WEBHOOK_SECRET.")
    # isdigit() alone takes "²" and a 5,000-digit number, which int() then refuses.
    if not re.fullmatch(r"[0-9]{1,12}", timestamp.strip()):
        raise ChatwootSignatureError("X-Chatwoot-Timestamp is missing or not a number of seconds.",
                                     "invalid_timestamp")
    if abs(now - int(timestamp)) > SIGNATURE_TOLERANCE:
        raise ChatwootSignatureError(f"X-Chatwoot-Timestamp is more than {SIGNATURE_TOLERANCE} s away from now.",
                                     "stale_timestamp")
    if not signature.strip():
        raise ChatwootSignatureError("X-Chatwoot-Signature is missing: the event is not signed.", "missing_signature")
    if not hmac.compare_digest(signature_for(secret, timestamp.strip(), body), signature.strip()):
        raise ChatwootSignatureError("X-Chatwoot-Signature does not match the body.", "invalid_signature")


def first_delivery(client: redis.Redis, delivery_id: str) -> bool:
    """True the first time a delivery id is seen (Chatwoot retries a delivery with the same id)."""
    return bool(client.set(f"chatbot:chatwoot:delivery:{delivery_id}", "1", nx=True, ex=DELIVERY_TTL))


def forget_delivery(client: redis.Redis, delivery_id: str) -> None:
    """Forget a delivery that could not be queued, so that Chatwoot's retry of it is taken; best effort."""
    try:
        client.delete(f"chatbot:chatwoot:delivery:{delivery_id}")
    except redis.RedisError as exc:
        log.warning("Could not forget Chatwoot delivery %s: %s", delivery_id, exc)


def customer_message(event: MessageCreated) -> dict | None:
    """The fields `answer` needs from a `message_created` event, when it is a customer's message the bot should
    answer.

    The bot's own messages, private notes and conversations a person already has ("open") are left alone: None.
    """
    conversation = event.conversation or Conversation()
    if event.message_type != "incoming" or event.private or conversation.status == HANDOFF_STATUS:
        return None
    account = event.account.id if event.account else None
    content = (event.content or "").strip()
    if account is None or conversation.id is None or not content:
        return None
    return {"account": account, "conversation": conversation.id, "content": content, "message_id": event.id}


def status_change(event: StatusChanged) -> dict | None:
    """A person resolved the conversation in Chatwoot, or gave it back to the bot ("pending"); else None."""
    conversation = event.conversation or Conversation()
    status = event.status or conversation.status
    messages = conversation.messages or event.messages or [None]
    account = ((event.account.id if event.account else None) or event.account_id
               or (messages[0].account_id if messages[0] else None))
    conversation_id = conversation.id or event.id
    if status not in ("resolved", "pending") or account is None or conversation_id is None:
        return None
    return {"account": account, "conversation": conversation_id, "status": status}


def job_for(payload: dict) -> tuple[Callable[[dict], Any], dict] | None:
    """The job an event needs (the function and its one argument), None when it needs none.

    Raises ChatwootEventError when a field the job would read is not of Chatwoot's types: checked
    here, before the delivery is recorded or anything queued.
    """
    event = read_event(payload)
    if isinstance(event, MessageCreated):
        message = customer_message(event)
        return (answer, message) if message is not None else None
    if isinstance(event, StatusChanged):
        change = status_change(event)
        return (follow_status, change) if change is not None else None
    return None


def queue_job(client: redis.Redis, job: tuple[Callable[[dict], Any], dict] | None) -> bool:
    """Queue `job_for`'s job for the worker; False when there is none."""
    if job is None:
        return False
    function, argument = job
    job_queue(client).enqueue(function, argument)
    return True


def follow_status(change: dict) -> bool:
    """The RQ job: Chatwoot's people resolved the conversation (the case closes) or set it back to
    "pending" (the assistant answers again); True when the desk had it with a person."""
    from chatbot.handoff.queue import CLOSED, HANDED_BACK
    from chatbot.helpdesk.runtime import services

    outcome = CLOSED if change["status"] == "resolved" else HANDED_BACK
    return services().handoff.release(session_for(change["account"], change["conversation"]), outcome, "Chatwoot")


def session_for(account: int, conversation: int) -> str:
    """The desk's conversation id of a Chatwoot conversation."""
    return f"chatwoot-{account}-{conversation}"


def answer(message: dict) -> str:
    """The RQ job: run the turn, then queue posting the reply (and the handoff) back to Chatwoot."""
    from chatbot.helpdesk.runtime import chatbot

    reply = chatbot().ask(session_for(message["account"], message["conversation"]), message["content"])
    text = reply.text if reply is not None else ""
    handed_off = bool(reply is not None and reply.meta.handed_off)
    if text or handed_off:
        from rq import get_current_job

        job_queue(get_current_job().connection).enqueue(
            post_reply, message["account"], message["conversation"], text, handed_off, retry=POST_RETRY)
    return text


def post_reply(account: int, conversation: int, text: str, hand_off: bool) -> None:
    """The RQ job: post the reply as the bot, and hand the conversation to a person when it was escalated."""
    from chatbot.helpdesk.runtime import settings

    client = ChatwootClient.from_settings(settings())
    if text:
        client.post_message(account, conversation, text)
    if hand_off:
        client.toggle_status(account, conversation, HANDOFF_STATUS)


class ChatwootClient:
    """The calls the bot makes to Chatwoot's application API."""

    def __init__(self, base_url: str, api_token: str, timeout: float = REQUEST_TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self.headers = {"api_access_token": api_token}
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings) -> "ChatwootClient":
        return cls(settings.require("chatwoot_url"), settings.require("chatwoot_api_token"))

    def _post(self, path: str, body: dict) -> dict:
        try:
            response = httpx.post(self.base_url + path, json=body, headers=self.headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise ChatwootError(f"Chatwoot did not answer ({exc.__class__.__name__}: {exc}).") from exc
        if response.status_code >= 400:
            raise ChatwootError(f"Chatwoot refused {path}: HTTP {response.status_code} {response.text[:200]}")
        return response.json()

    def post_message(self, account: int, conversation: int, content: str) -> dict:
        """An outgoing (public) message from the bot in the conversation; returns Chatwoot's message."""
        return self._post(f"/api/v1/accounts/{account}/conversations/{conversation}/messages",
                          {"content": content, "message_type": "outgoing", "private": False})

    def toggle_status(self, account: int, conversation: int, status: str) -> dict:
        """Set the conversation's status ("open": hand it to the human agents)."""
        return self._post(f"/api/v1/accounts/{account}/conversations/{conversation}/toggle_status",
                          {"status": status})
