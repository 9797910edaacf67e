"""A local server speaking Chatwoot's wire protocol: its application API, and its agent-bot webhooks.

The API side answers what an agent bot calls, as Chatwoot does, with the bot's `api_access_token`
header checked (401 otherwise):
  POST /api/v1/accounts/{account}/conversations/{id}/messages       -> the created message
  POST /api/v1/accounts/{account}/conversations/{id}/toggle_status  -> {"meta": {}, "payload": {...}}
  GET  /api/v1/accounts/{account}/conversations/{id}/messages       -> {"meta": {...}, "payload": [messages]}
The webhook side plays the customer: `customer_says` posts a `message_created` event to the bot's
webhook URL, signed (X-Chatwoot-Signature: `sha256=` + hex HMAC-SHA256 of `{timestamp}.{body}`),
timestamped and with a delivery id (X-Chatwoot-Delivery), and returns the answer and its latency.

    with ChatwootServer(webhook_url=url, webhook_secret="s", api_token="t") as chatwoot:
        chatwoot.customer_says(7, "How do I get a refund?")
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from devtools.servers.base import RecordedRequest

ROUTE = re.compile(r"^/api/v1/accounts/(\d+)/conversations/(\d+)/(messages|toggle_status)$")


@dataclass
class Conversation:
    id: int
    status: str = "pending"  # an agent bot's conversations start "pending"; "open" is with the humans
    messages: list[dict] = field(default_factory=list)


@dataclass
class Delivery:
    """One webhook the server sent: what the bot's endpoint answered, and how fast."""

    id: str
    status: int
    body: Any
    elapsed_ms: float


class ChatwootServer:
    """Chatwoot for one account: conversations in memory, every API request recorded."""

    def __init__(self, *, webhook_url: str = "", webhook_secret: str = "", api_token: str = "bot-token",
                 account_id: int = 1, port: int = 0):
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.api_token = api_token
        self.account_id = account_id
        self.conversations: dict[int, Conversation] = {}
        self.requests: list[RecordedRequest] = []
        self.failures: list[int] = []  # HTTP statuses the API answers first, one per request, before working
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._http = httpx.Client(timeout=30)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def conversation(self, conversation_id: int) -> Conversation:
        with self._lock:
            return self.conversations.setdefault(conversation_id, Conversation(conversation_id))

    def bot_messages(self, conversation_id: int) -> list[str]:
        """What the bot posted in a conversation, in order."""
        return [m["content"] for m in self.conversation(conversation_id).messages if m["message_type"] == 1]

    # -- the customer's side: webhooks to the bot ---------------------------------------------------
    def event(self, conversation_id: int, content: str) -> dict:
        """A `message_created` event for a customer's message, shaped as Chatwoot sends it to an agent bot."""
        conversation = self.conversation(conversation_id)
        message = {"id": next(self._ids), "content": content, "message_type": 0, "private": False,
                   "created_at": int(time.time()), "sender_type": "Contact"}
        conversation.messages.append(message)
        return {
            "event": "message_created", "id": message["id"], "content": content, "message_type": "incoming",
            "content_type": "text", "content_attributes": {}, "private": False,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "sender": {"id": 42, "name": "Casey Customer", "type": "contact"},
            "account": {"id": self.account_id, "name": "Acme"}, "inbox": {"id": 1, "name": "Website"},
            "conversation": {"id": conversation_id, "status": conversation.status, "inbox_id": 1,
                             "channel": "Channel::WebWidget", "messages": [message]},
        }

    def deliver(self, payload: dict, *, delivery_id: str | None = None, secret: str | None = None,
                timestamp: int | None = None) -> Delivery:
        """POST one signed webhook to the bot's URL; `secret`/`timestamp` override them to sign it wrongly."""
        body = json.dumps(payload).encode()
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        key = (self.webhook_secret if secret is None else secret).encode()
        signature = "sha256=" + hmac.new(key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        delivery_id = delivery_id or str(uuid.uuid4())
        headers = {"Content-Type": "application/json", "User-Agent": "Chatwoot", "X-Chatwoot-Signature": signature,
                   "X-Chatwoot-Timestamp": stamp, "X-Chatwoot-Delivery": delivery_id}
        started = time.perf_counter()
        response = self._http.post(self.webhook_url, content=body, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        try:
            answer = response.json()
        except ValueError:
            answer = response.text
        return Delivery(delivery_id, response.status_code, answer, elapsed)

    def agent_sets_status(self, conversation_id: int, status: str, **kwargs: Any) -> Delivery:
        """A human agent changes the conversation's status in Chatwoot: `conversation_status_changed` to the bot."""
        conversation = self.conversation(conversation_id)
        conversation.status = status
        payload = {"event": "conversation_status_changed", "id": conversation_id, "status": status,
                   "account": {"id": self.account_id, "name": "Acme"}, "inbox": {"id": 1, "name": "Website"},
                   "conversation": {"id": conversation_id, "status": status, "inbox_id": 1}}
        return self.deliver(payload, **kwargs)

    def customer_says(self, conversation_id: int, content: str, **kwargs: Any) -> Delivery:
        """The customer writes in a conversation: the message is stored and its webhook sent to the bot."""
        return self.deliver(self.event(conversation_id, content), **kwargs)

    # -- the API side ------------------------------------------------------------------------------
    def __enter__(self) -> "ChatwootServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner._handle(self)

            def do_POST(self) -> None:
                owner._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._http.close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self.requests.append(RecordedRequest(h.command, h.path, {k.lower(): v for k, v in h.headers.items()},
                                                 body, time.monotonic()))
        if h.headers.get("api_access_token") != self.api_token:
            return self._send(h, 401, {"errors": ["You are not authorized to do this action"]})
        with self._lock:
            failure = self.failures.pop(0) if self.failures else None
        if failure:
            return self._send(h, failure, {"error": "Internal Server Error"})
        match = ROUTE.match(h.path.split("?")[0])
        if not match or int(match.group(1)) != self.account_id:
            return self._send(h, 404, {"error": "Resource could not be found"})
        conversation = self.conversation(int(match.group(2)))
        if match.group(3) == "toggle_status" and h.command == "POST":
            status = (body or {}).get("status")
            if status not in ("open", "resolved", "pending", "snoozed"):
                return self._send(h, 422, {"error": f"Invalid status {status!r}"})
            conversation.status = status
            return self._send(h, 200, {"meta": {}, "payload": {
                "success": True, "conversation_id": conversation.id, "current_status": status}})
        if h.command == "GET":
            return self._send(h, 200, {"meta": {"contact": {}}, "payload": conversation.messages})
        if not isinstance(body, dict) or not (body.get("content") or "").strip():
            return self._send(h, 422, {"error": "content can't be blank"})
        message = {"id": next(self._ids), "content": body["content"], "private": bool(body.get("private")),
                   "message_type": 1 if body.get("message_type", "outgoing") == "outgoing" else 0,
                   "content_type": "text", "conversation_id": conversation.id, "created_at": int(time.time()),
                   "sender": {"id": 1, "name": "Support bot", "type": "agent_bot"}}
        conversation.messages.append(message)
        self._send(h, 200, message)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
