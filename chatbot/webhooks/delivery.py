"""Signing and delivering webhook events: enqueued on the request path, sent by the RQ worker.

Each attempt signs the payload per the Standard Webhooks spec with the `standardwebhooks`
package (headers `webhook-id`, `webhook-timestamp`, `webhook-signature`; the id is the same on
every attempt, the timestamp is the attempt's). A 2xx answer is a success. Anything else is
retried on the spec's schedule (RETRY_SCHEDULE); a `Retry-After` header (seconds or an HTTP
date) postpones the next attempt when it asks for longer; 410 Gone disables the endpoint and
stops retrying. After the last attempt the delivery is failed, and stays in the log to replay.

An attempt has ATTEMPT_TIMEOUT seconds in all, connecting, sending and the whole answer: httpx's
own timeouts are per network operation, so a receiver trickling its answer a byte at a time would
otherwise hold the worker (and every delivery and help desk reply queued behind it) for as long
as it likes. Whatever ends an attempt, an answer, no answer in time or an error of any kind, is
recorded on the delivery, and a failure is retried like any other.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Callable

import httpx
import redis
from standardwebhooks import Webhook

from chatbot.store.jobs import current_connection, job_queue
from chatbot.webhooks.events import TEST, envelope
from chatbot.webhooks.registry import (FAILED, PENDING, RETRYING, SUCCEEDED, Delivery, WebhookNotFound,
                                       WebhookRegistry)

log = logging.getLogger(__name__)
# Seconds to wait after each failed attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h
# (the Standard Webhooks spec, "Retry schedule", after an immediate first attempt).
RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
ATTEMPT_TIMEOUT = 15.0  # seconds one attempt may take in all: connecting, sending, the receiver's whole answer
ERROR_BODY = 300  # characters of a failed answer's body kept as its error
MAX_RETRY_AFTER = 86400  # a receiver cannot push a retry further than a day
USER_AGENT = "support-desk-webhooks/1"


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A `Retry-After` header (RFC 9110: delay-seconds or an HTTP-date) in seconds from `now`; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    # delay-seconds is ASCII digits only: str.isdigit() alone also takes "²" or "٣", which float() refuses.
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, OverflowError):
        return None


def next_delay(attempts: int, retry_after: float | None) -> float | None:
    """Seconds before the next attempt after `attempts` failed ones; None when the schedule is spent."""
    if attempts > len(RETRY_SCHEDULE):
        return None
    delay = float(RETRY_SCHEDULE[attempts - 1])
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))  # never sooner than the receiver asked
    return delay


def sign_headers(secret: str, message_id: str, payload: str, when: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    signature = Webhook(secret).sign(message_id, when, payload)
    return {"webhook-id": message_id, "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": signature, "content-type": "application/json", "user-agent": USER_AGENT}


class Dispatcher:
    """The desk's event sink: one delivery per interested endpoint, each enqueued for the worker.

    `emit` never raises: an event that cannot be queued (the store is down) is logged, and the
    turn that caused it carries on.
    """

    def __init__(self, connection: redis.Redis | Callable[[], redis.Redis]):
        # A callable follows the conversation store's client, which is replaced when a lost server restarts.
        self._connection = connection if callable(connection) else (lambda: connection)

    @property
    def client(self) -> redis.Redis:
        return self._connection()

    @property
    def registry(self) -> WebhookRegistry:
        return WebhookRegistry(self.client)

    def __call__(self, event_type: str, data: dict) -> None:
        self.emit(event_type, data)

    def emit(self, event_type: str, data: dict) -> list[Delivery]:
        try:
            endpoints = [e for e in self.registry.endpoints() if e.wants(event_type)]
            return [self._queue(e, event_type, data) for e in endpoints]
        except redis.RedisError as exc:
            log.warning("Webhook event %s not queued: %s", event_type, exc)
            return []

    def _queue(self, endpoint, event_type: str, data: dict) -> Delivery:
        payload = json.dumps(envelope(event_type, data), ensure_ascii=False, separators=(",", ":"))
        delivery = self.registry.new_delivery(endpoint, event_type, payload, "msg_" + uuid.uuid4().hex)
        job_queue(self.client).enqueue(deliver, delivery.id)
        return delivery

    def send_test(self, endpoint_id: str) -> Delivery:
        """A `webhook.test` event to one endpoint, attempted now (the admin waits for the answer)."""
        endpoint = self.registry.endpoint(endpoint_id)
        payload = json.dumps(envelope(TEST, {"endpoint": endpoint.id, "message": "A test event from the desk."}),
                             separators=(",", ":"))
        delivery = self.registry.new_delivery(endpoint, TEST, payload, "msg_" + uuid.uuid4().hex)
        attempt(self.client, delivery.id, force=True)
        return self.registry.delivery(delivery.id)

    def replay(self, delivery_id: str) -> Delivery:
        """Send a delivery again (same payload and webhook-id), with a fresh retry schedule, by the worker."""
        delivery = self.registry.delivery(delivery_id)
        self.registry.update_delivery(delivery.id, status=PENDING, attempts=0, next_at=0, last_error="")
        job_queue(self.client).enqueue(deliver, delivery.id, True)
        return self.registry.delivery(delivery.id)


def deliver(delivery_id: str, force: bool = False) -> str:
    """The RQ job: one attempt of one delivery, and the next one scheduled when it fails."""
    return attempt(current_connection(), delivery_id, force=force)


def attempt(client: redis.Redis, delivery_id: str, *, force: bool = False) -> str:
    """Try a delivery once; returns its new status. `force` sends even to a disabled endpoint (a test, a replay)."""
    registry = WebhookRegistry(client)
    delivery = registry.delivery(delivery_id)
    try:
        endpoint = registry.endpoint(delivery.endpoint)
    except WebhookNotFound as exc:  # the endpoint was deleted since: nothing to send to
        registry.update_delivery(delivery.id, status=FAILED, last_error=str(exc), next_at=0)
        return FAILED
    if not endpoint.enabled and not force:
        registry.update_delivery(delivery.id, status=FAILED, next_at=0,
                                 last_error=f"Not sent: the endpoint is disabled ({endpoint.disabled_reason}).")
        return FAILED
    attempts = delivery.attempts + 1
    try:
        code, error, retry_after = _post(endpoint.url, endpoint.secret, delivery)
    except Exception as exc:  # noqa: BLE001
        # Whatever went wrong, the attempt is recorded and retried: an exception let out of here
        # would leave the delivery pending, with no error and no next attempt, for ever.
        log.exception("Webhook delivery %s: the attempt failed", delivery.id)
        code, error, retry_after = 0, f"Not sent: {exc.__class__.__name__}: {exc}"[:500], None
    if 200 <= code < 300:
        registry.update_delivery(delivery.id, status=SUCCEEDED, attempts=attempts, last_code=code,
                                 last_error="", next_at=0)
        return SUCCEEDED
    if code == 410:
        # The receiver says this endpoint is gone for good: stop sending to it (spec, "Disabling endpoints").
        reason = f"the receiver answered 410 Gone on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
        registry.set_enabled(endpoint.id, False, reason)
        registry.update_delivery(delivery.id, status=FAILED, attempts=attempts, last_code=code,
                                 last_error=f"Endpoint disabled: {reason}.", next_at=0)
        return FAILED
    delay = next_delay(attempts, retry_after)
    if delay is None:
        registry.update_delivery(delivery.id, status=FAILED, attempts=attempts, last_code=code,
                                 last_error=error, next_at=0)
        return FAILED
    registry.update_delivery(delivery.id, status=RETRYING, attempts=attempts, last_code=code, last_error=error,
                             next_at=time.time() + delay)
    job_queue(client).enqueue_in(timedelta(seconds=delay), deliver, delivery.id, force)
    return RETRYING


def _post(url: str, secret: str, delivery: Delivery) -> tuple[int, str, float | None]:
    """(HTTP status or 0, what went wrong, Retry-After seconds) of one signed POST, within ATTEMPT_TIMEOUT in all."""
    # httpx has no deadline for a whole request (encode/httpx#1450); its async client, cancelled by
    # asyncio.timeout, is how to have one. Each attempt runs its own event loop: the worker and the
    # page call this from plain threads.
    return asyncio.run(_post_within_deadline(url, secret, delivery))


async def _post_within_deadline(url: str, secret: str, delivery: Delivery) -> tuple[int, str, float | None]:
    headers = sign_headers(secret, delivery.message_id, delivery.payload, datetime.now(timezone.utc))
    try:
        async with asyncio.timeout(ATTEMPT_TIMEOUT):
            async with httpx.AsyncClient(timeout=ATTEMPT_TIMEOUT, follow_redirects=False) as http:
                async with http.stream("POST", url, content=delivery.payload.encode(), headers=headers) as response:
                    if 200 <= response.status_code < 300:
                        return response.status_code, "", None  # its body is not needed
                    body = await _start_of(response, ERROR_BODY * 4)
    except TimeoutError:
        return 0, f"No whole answer within {ATTEMPT_TIMEOUT:g} s, the time one attempt has.", None
    except httpx.HTTPError as exc:
        return 0, f"No answer: {exc.__class__.__name__}: {exc}"[:500], None
    error = f"HTTP {response.status_code}: {body.decode('utf-8', 'replace')[:ERROR_BODY]}"
    return response.status_code, error, retry_after_seconds(response.headers.get("retry-after"), time.time())


async def _start_of(response: httpx.Response, size: int) -> bytes:
    """Up to `size` bytes of a body: a failed answer's start is enough to say why, whatever its length."""
    body = b""
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= size:
            break
    return body[:size]
