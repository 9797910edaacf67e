"""Webhook endpoints (URL, secret, events) and the delivery log, kept in the conversation store's Redis.

Keys:
  chatbot:webhooks:endpoints         hash: endpoint id -> JSON endpoint
  chatbot:webhooks:delivery:ID       hash: one delivery of one event to one endpoint (see Delivery)
  chatbot:webhooks:deliveries        sorted set: delivery ids by creation time (the log, newest kept)
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Callable
from urllib.parse import urlsplit

import httpx
import redis

from chatbot.store.server import as_text
from chatbot.webhooks.events import EVENTS
from common.errors import ChatbotError, InputRejected
from common.settings import MAX_PORT, MIN_PORT

ENDPOINTS = "chatbot:webhooks:endpoints"
LOG = "chatbot:webhooks:deliveries"
LOG_SIZE = 1000  # deliveries kept in the log; older ones are dropped with their records
DELIVERY_TTL = 30 * 86400  # a delivery record lives 30 days at most
# Characters in an endpoint URL. httpx itself stops at 65,536, but servers and proxies refuse request
# lines far shorter (8 KB is common), and a webhook URL has no reason to be longer than this.
MAX_URL_LENGTH = 2048
# Statuses of a delivery.
PENDING, SUCCEEDED, RETRYING, FAILED = "pending", "succeeded", "retrying", "failed"


class WebhookNotFound(ChatbotError):
    """No endpoint or delivery with that id (deleted, expired or never made)."""


def new_secret() -> str:
    """A signing secret in the spec's form: `whsec_` and 32 random bytes in base64 (24 to 64 bytes advised)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Endpoint:
    """Where events go: the URL, its signing secret, the event types it wants ([] for all)."""

    id: str
    url: str
    secret: str
    events: list[str] = field(default_factory=list)
    description: str = ""
    enabled: bool = True
    disabled_reason: str = ""
    created: float = 0.0

    def wants(self, event_type: str) -> bool:
        return self.enabled and (not self.events or event_type in self.events)


@dataclass
class Delivery:
    """One event for one endpoint: the exact payload sent, and how its attempts went."""

    id: str
    message_id: str  # the `webhook-id` header: the same on every attempt, so receivers can deduplicate
    endpoint: str
    url: str  # the endpoint's URL when it was made, redacted (see redact)
    type: str
    payload: str  # the JSON body, byte for byte what is signed and sent
    status: str = PENDING
    attempts: int = 0
    last_code: int = 0  # the receiver's last HTTP status; 0 when it did not answer
    last_error: str = ""
    next_at: float = 0.0  # when the next attempt is due (epoch seconds); 0 when none is scheduled
    created: float = 0.0
    updated: float = 0.0
    job: str = ""  # the RQ job due to make the next attempt; a job with another id was superseded by a replay
    deadline: float = 0.0  # while an attempt is in flight, when it must have been recorded by; 0 otherwise

    @classmethod
    def from_hash(cls, raw: dict) -> "Delivery":
        h = {as_text(k): as_text(v) for k, v in raw.items()}
        return cls(
            id=h["id"], message_id=h["message_id"], endpoint=h["endpoint"], url=h["url"], type=h["type"],
            payload=h["payload"], status=h.get("status", PENDING), attempts=int(h.get("attempts", 0)),
            last_code=int(h.get("last_code", 0)), last_error=h.get("last_error", ""),
            next_at=float(h.get("next_at", 0)), created=float(h.get("created", 0)),
            updated=float(h.get("updated", 0)), job=h.get("job", ""), deadline=float(h.get("deadline", 0)),
        )


def check_url(url: str) -> str:
    """The URL, stripped; InputRejected unless it is an http(s) URL with a host that httpx can send to.

    It is parsed by httpx.URL, as delivery will parse it: a URL that only passed a looser check
    would be refused by httpx at every attempt instead (a port that is not a number, say).
    """
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise InputRejected(f"A webhook URL can be at most {MAX_URL_LENGTH} characters long: "
                            f"this one has {len(url)}.")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise InputRejected("A webhook URL cannot hold spaces or control characters: percent-encode them "
                            "(a space is %20).")
    try:
        split = urlsplit(url)  # first, for its clearer words on a broken IPv6 address ("Invalid IPv6 URL")
        parsed = httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        if "@" in url:  # neither the URL nor the parser's words (they may quote it): a password may be in them
            raise InputRejected("A webhook URL must be a valid https:// or http:// URL, and this one is not: a "
                                "user name or password in it must percent-encode / ? # @ and :.") from None
        raise InputRejected(f"A webhook URL must be a valid https:// or http:// URL: "
                            f"{redact(url)!r} is not ({exc}).") from None
    # The port as written: httpx (as Python's int) also reads " 80", "+80" or full-width digits as 80.
    port = split.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]
    if port and not (port.isascii() and port.isdigit()):
        raise InputRejected(f"A webhook URL's port must be written in digits 0-9: {redact(url)!r} has {port!r}.")
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InputRejected(f"A webhook URL must start with https:// or http:// and name a host: "
                            f"{redact(url)!r} does not.")
    if parsed.port is not None and not MIN_PORT <= parsed.port <= MAX_PORT:
        raise InputRejected(f"A webhook URL's port must be between {MIN_PORT} and {MAX_PORT}: {redact(url)!r} has "
                            f"{parsed.port}.")
    return url


def redact(url: str) -> str:
    """The URL as it may be shown or logged: its user name and password (`https://user:pass@host/`) become `***`.

    A regular expression rather than a parser, so that a URL stored before it was checked is redacted too;
    the user information runs to the authority's last `@` (as httpx reads it), so a stray `@` in a
    password does not leave its end showing.
    """
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@", r"\1***@", url)


class WebhookRegistry:
    """Endpoints and deliveries over one Redis connection."""

    def __init__(self, client: redis.Redis, clock: Callable[[], float] = time.time):
        self.client = client
        self.clock = clock

    # -- endpoints ----------------------------------------------------------------------------
    def add_endpoint(self, url: str, events: list[str] | None = None, description: str = "") -> Endpoint:
        """A new endpoint with a fresh secret; InputRejected for a bad URL or an unknown event type."""
        unknown = [e for e in events or [] if e not in EVENTS]
        if unknown:
            raise InputRejected(f"Unknown event type(s): {', '.join(unknown)}. Known: {', '.join(EVENTS)}.")
        endpoint = Endpoint(id="ep_" + uuid.uuid4().hex[:16], url=check_url(url), secret=new_secret(),
                            events=list(events or []), description=description.strip(), created=self.clock())
        self.save_endpoint(endpoint)
        return endpoint

    def save_endpoint(self, endpoint: Endpoint) -> None:
        self.client.hset(ENDPOINTS, endpoint.id, json.dumps(asdict(endpoint)))

    def endpoints(self) -> list[Endpoint]:
        """Every endpoint, oldest first."""
        found = [Endpoint(**json.loads(raw)) for raw in self.client.hvals(ENDPOINTS)]
        return sorted(found, key=lambda e: e.created)

    def endpoint(self, endpoint_id: str) -> Endpoint:
        raw = self.client.hget(ENDPOINTS, endpoint_id)
        if raw is None:
            raise WebhookNotFound(f"No webhook endpoint {endpoint_id}: it was deleted or never existed.")
        return Endpoint(**json.loads(raw))

    def set_enabled(self, endpoint_id: str, enabled: bool, reason: str = "") -> Endpoint:
        endpoint = self.endpoint(endpoint_id)
        endpoint.enabled, endpoint.disabled_reason = enabled, "" if enabled else reason
        self.save_endpoint(endpoint)
        return endpoint

    def delete_endpoint(self, endpoint_id: str) -> bool:
        return bool(self.client.hdel(ENDPOINTS, endpoint_id))

    # -- deliveries ---------------------------------------------------------------------------
    def new_delivery(self, endpoint: Endpoint, event_type: str, payload: str, message_id: str,
                     job: str = "") -> Delivery:
        now = self.clock()
        # The log keeps the URL as it is shown: a password in it is not copied into a thousand records.
        delivery = Delivery(id="dlv_" + uuid.uuid4().hex[:20], message_id=message_id, endpoint=endpoint.id,
                            url=redact(endpoint.url), type=event_type, payload=payload, created=now, updated=now,
                            job=job)
        key = f"chatbot:webhooks:delivery:{delivery.id}"
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, mapping={k: str(v) for k, v in asdict(delivery).items()})
        pipe.expire(key, DELIVERY_TTL)
        pipe.zadd(LOG, {delivery.id: now})
        pipe.execute()
        self._trim()
        return delivery

    def _trim(self) -> None:
        extra = self.client.zcard(LOG) - LOG_SIZE
        if extra > 0:
            old = [as_text(i) for i in self.client.zrange(LOG, 0, extra - 1)]
            self.client.delete(*[f"chatbot:webhooks:delivery:{i}" for i in old])
            self.client.zrem(LOG, *old)

    def update_delivery(self, delivery_id: str, **fields: object) -> None:
        self.client.hset(f"chatbot:webhooks:delivery:{delivery_id}",
                         mapping={k: str(v) for k, v in {**fields, "updated": self.clock()}.items()})

    def delivery(self, delivery_id: str) -> Delivery:
        raw = self.client.hgetall(f"chatbot:webhooks:delivery:{delivery_id}")
        if not raw:
            raise WebhookNotFound(f"No delivery {delivery_id}: it expired from the log or never existed.")
        return Delivery.from_hash(raw)

    def deliveries(self, limit: int = 100, status: str = "") -> list[Delivery]:
        """The log, newest first; only deliveries with `status` when given."""
        ids = [as_text(i) for i in self.client.zrevrange(LOG, 0, (LOG_SIZE if status else limit) - 1)]
        pipe = self.client.pipeline(transaction=False)
        for delivery_id in ids:
            pipe.hgetall(f"chatbot:webhooks:delivery:{delivery_id}")
        found = [Delivery.from_hash(raw) for raw in pipe.execute() if raw]
        return [d for d in found if not status or d.status == status][:limit]
