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

Each delivery names the RQ job due to make its next attempt, and marks an attempt in flight with
a deadline. So a delivery left pending all the same (its worker was killed mid-attempt, its job
was lost) can be told from one still waiting, and replayed; a replay's job supersedes the old
one, which then sends nothing.
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
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from standardwebhooks import Webhook

from chatbot.store.jobs import job_queue
from chatbot.webhooks.events import TEST, envelope
from chatbot.webhooks.registry import (FAILED, PENDING, RETRYING, SUCCEEDED, Delivery, Endpoint, WebhookNotFound,
                                       WebhookRegistry, redact)
from common.errors import ChatbotError

log = logging.getLogger(__name__)
# Seconds to wait after each failed attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h
# (the Standard Webhooks spec, "Retry schedule", after an immediate first attempt).
RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
ATTEMPT_TIMEOUT = 15.0  # seconds one attempt may take in all: connecting, sending, the receiver's whole answer
# After this many seconds an attempt not yet recorded never will be (its worker died): its delivery can be replayed.
ATTEMPT_DEADLINE = ATTEMPT_TIMEOUT + 30
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


def new_job_id() -> str:
    """An id for the RQ job of a delivery's next attempt, chosen before it is queued so the delivery names it first."""
    return "whk_" + uuid.uuid4().hex


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
        job = new_job_id()
        delivery = self.registry.new_delivery(endpoint, event_type, payload, "msg_" + uuid.uuid4().hex, job)
        job_queue(self.client).enqueue(deliver, delivery.id, job_id=job)
        return delivery

    def send_test(self, endpoint_id: str) -> Delivery:
        """A `webhook.test` event to one endpoint: one attempt, now, whose result the admin waits for.

        A failed test is not retried: the admin sees why, fixes the receiver and tests again, rather
        than find it sent again for four days. EndpointDisabled when the endpoint is disabled.
        """
        endpoint = self.registry.endpoint(endpoint_id)
        refuse_disabled(endpoint, "send it a test event")
        payload = json.dumps(envelope(TEST, {"endpoint": endpoint.id, "message": "A test event from the desk."}),
                             separators=(",", ":"))
        delivery = self.registry.new_delivery(endpoint, TEST, payload, "msg_" + uuid.uuid4().hex)
        attempt(self.client, delivery.id, retry=False)
        return self.registry.delivery(delivery.id)

    def replay(self, delivery_id: str) -> Delivery:
        """Send a delivery again (same payload and webhook-id), with a fresh retry schedule, by the worker.

        A delivery still on its way (queued, waiting for a retry, its attempt in flight) is refused:
        see `can_replay`; so is one to a disabled endpoint (EndpointDisabled), or to a deleted one.
        """
        delivery = self.registry.delivery(delivery_id)
        refuse_disabled(self.registry.endpoint(delivery.endpoint), "replay a delivery to it")
        if not self.can_replay(delivery):
            raise DeliveryInProgress(f"Delivery {delivery.id} is still on its way ({delivery.status}, attempt "
                                     f"{delivery.attempts + 1} queued or running): replay it once it has ended.")
        job = new_job_id()
        self.registry.update_delivery(delivery.id, status=PENDING, attempts=0, next_at=0, last_error="", deadline=0,
                                      job=job)
        job_queue(self.client).enqueue(deliver, delivery.id, job_id=job)
        return self.registry.delivery(delivery.id)

    def can_replay(self, delivery: Delivery) -> bool:
        """Whether a replay may start: the delivery has ended, or it is stuck on its way.

        Stuck: an attempt began and was not recorded by its deadline (the worker died or was
        killed), or the job due to make its next attempt is no longer queued, scheduled or
        running (it failed, or was lost). A delivery queued before jobs were named cannot be told
        apart, and may be replayed: the replay supersedes its old job.
        """
        if delivery.status not in (PENDING, RETRYING):
            return True
        if delivery.deadline:
            return time.time() > delivery.deadline
        if not delivery.job:
            return True
        try:
            status = Job.fetch(delivery.job, connection=self.client).get_status()
        except NoSuchJobError:
            return True
        return status not in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED, JobStatus.STARTED)


class DeliveryInProgress(ChatbotError):
    """A replay of a delivery that is still on its way."""


class EndpointDisabled(ChatbotError):
    """A test or a replay for an endpoint that is disabled: it would send to a receiver that asked not to be sent to."""


def refuse_disabled(endpoint: Endpoint, action: str) -> None:
    if not endpoint.enabled:
        raise EndpointDisabled(f"The endpoint {redact(endpoint.url)} is disabled "
                               f"({endpoint.disabled_reason or 'by an admin'}): enable it first (its Enable button), "
                               f"then {action}.")


def deliver(delivery_id: str, *_: object) -> str:
    """The RQ job: one attempt of one delivery, and the next one scheduled when it fails.

    Jobs queued by earlier versions pass a second argument (`force`, to send to a disabled endpoint): ignored,
    a disabled endpoint is sent nothing.
    """
    from rq import get_current_job

    job = get_current_job()
    return attempt(job.connection, delivery_id, job_id=job.id)


def attempt(client: redis.Redis, delivery_id: str, *, retry: bool = True, job_id: str = "") -> str:
    """Try a delivery once; returns its new status. With `retry` False (a test event), a failure is final.

    `job_id`: the RQ job running it; a job other than the one the delivery names was superseded by a replay,
    and sends nothing.
    """
    registry = WebhookRegistry(client)
    delivery = registry.delivery(delivery_id)
    if job_id and delivery.job and job_id != delivery.job:
        log.info("Webhook delivery %s: job %s superseded by %s, not sent", delivery.id, job_id, delivery.job)
        return delivery.status
    try:
        endpoint = registry.endpoint(delivery.endpoint)
    except WebhookNotFound as exc:  # the endpoint was deleted since: nothing to send to
        registry.update_delivery(delivery.id, status=FAILED, last_error=str(exc), next_at=0)
        return FAILED
    if not endpoint.enabled:
        registry.update_delivery(delivery.id, status=FAILED, next_at=0,
                                 last_error=f"Not sent: the endpoint is disabled ({endpoint.disabled_reason}).")
        return FAILED
    attempts = delivery.attempts + 1
    registry.update_delivery(delivery.id, deadline=time.time() + ATTEMPT_DEADLINE)
    try:
        code, error, retry_after = _post(endpoint.url, endpoint.secret, delivery)
    except Exception as exc:  # noqa: BLE001
        # Whatever went wrong, the attempt is recorded and retried: an exception let out of here
        # would leave the delivery pending, with no error and no next attempt, for ever.
        log.exception("Webhook delivery %s: the attempt failed", delivery.id)
        code, error, retry_after = 0, f"Not sent: {exc.__class__.__name__}: {exc}"[:500], None
    if 200 <= code < 300:
        registry.update_delivery(delivery.id, status=SUCCEEDED, attempts=attempts, last_code=code,
                                 last_error="", next_at=0, deadline=0)
        return SUCCEEDED
    if code == 410:
        # The receiver says this endpoint is gone for good: stop sending to it (spec, "Disabling endpoints").
        reason = f"the receiver answered 410 Gone on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
        registry.set_enabled(endpoint.id, False, reason)
        registry.update_delivery(delivery.id, status=FAILED, attempts=attempts, last_code=code,
                                 last_error=f"Endpoint disabled: {reason}.", next_at=0, deadline=0)
        return FAILED
    delay = next_delay(attempts, retry_after) if retry else None
    if delay is None:
        registry.update_delivery(delivery.id, status=FAILED, attempts=attempts, last_code=code,
                                 last_error=error, next_at=0, deadline=0)
        return FAILED
    job = new_job_id()
    registry.update_delivery(delivery.id, status=RETRYING, attempts=attempts, last_code=code, last_error=error,
                             next_at=time.time() + delay, deadline=0, job=job)
    job_queue(client).enqueue_in(timedelta(seconds=delay), deliver, delivery.id, job_id=job)
    return RETRYING


def _post(url: str, secret: str, delivery: Delivery) -> tuple[int, str, float | None]:
    """(HTTP status or 0, what went wrong, Retry-After seconds) of one signed POST, within ATTEMPT_TIMEOUT in all."""
    # httpx has no deadline for a whole request (encode/httpx#1450); its async client, cancelled by
    # asyncio.timeout, is how to have one. Each attempt runs its own event loop: the worker and the
    # page call this from plain threads.
    return asyncio.run(_post_within_deadline(url, secret, delivery))


async def _post_within_deadline(url: str, secret: str, delivery: Delivery) -> tuple[int, str, float | None]:
    headers = sign_headers(secret, delivery.message_id, delivery.payload, datetime.now(timezone.utc))
    # A user name and password in the URL go as Basic auth, what httpx would make of them anyway, so that
    # the URL httpx logs ("HTTP Request: POST ...") and puts in its errors carries no password.
    target = httpx.URL(url)
    auth = httpx.BasicAuth(target.username, target.password) if target.userinfo else None
    target = target.copy_with(username=None, password=None)
    try:
        async with asyncio.timeout(ATTEMPT_TIMEOUT):
            async with httpx.AsyncClient(timeout=ATTEMPT_TIMEOUT, follow_redirects=False) as http:
                async with http.stream("POST", target, content=delivery.payload.encode(), headers=headers,
                                       auth=auth) as response:
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
