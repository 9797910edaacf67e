"""Incoming webhooks: Chatwoot's agent bot posts each event here; it is checked, deduplicated and queued.

`chatwoot_router(...)` is an APIRouter for the API app (`app.include_router(...)`); `make_app()`
serves it alone: `uvicorn api.webhooks_in:make_app --factory --port 8010`. The answer is sent in
milliseconds (signature, the event's fields, one Redis SET, one enqueue); the reply itself is
written by the worker (`python -m chatbot webhook-worker`) and posted back through Chatwoot's API.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import redis
from fastapi import APIRouter, FastAPI, Request

from api import errors
from api.body_limit import RefusalInOurShape
from api.errors import ApiError
from chatbot.helpdesk.chatwoot import (ChatwootSignatureError, first_delivery, forget_delivery, job_for, queue_job,
                                       verify_signature)
from chatbot.helpdesk.chatwoot_events import ChatwootEventError
from common.errors import ConfigurationError

PATH = "/v1/integrations/chatwoot"

# Chatwoot's events are a few kB; the endpoint is open to anyone until the signature is checked, so a
# body is read only up to this many bytes (FastAPI's `max_body_size` counts it as it arrives: 413 past it).
MAX_BODY_BYTES = 1_000_000
QUEUE_DOWN = "The desk's queue (Redis) is unavailable; Chatwoot will retry the delivery."


def _signed_body(body: bytes, headers, secret: str) -> None:
    """Raise ApiError 401 naming the check that failed, 503 when no webhook secret is set."""
    try:
        verify_signature(secret, body, headers.get("x-chatwoot-timestamp", ""),
                         headers.get("x-chatwoot-signature", ""), time.time())
    except ChatwootSignatureError as exc:
        raise ApiError(401, exc.problem, str(exc)) from exc
    except ConfigurationError as exc:
        raise ApiError(503, "webhook_not_configured", str(exc)) from exc


def _event(body: bytes) -> dict:
    """The event as a JSON object, or ApiError 400 `invalid_json` / `invalid_event`."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser goes
        raise ApiError(400, "invalid_json", f"The body is not JSON ({errors.unreadable_json(exc)}).") from exc
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_event", f"The body is a JSON {type(payload).__name__}, not an object: "
                                             "a Chatwoot event is an object.")
    return payload


def _job(payload: dict) -> tuple[Callable[[dict], Any], dict] | None:
    """The job the event needs (None: none), or ApiError 400 `invalid_event` naming each field not of
    Chatwoot's types (in `fields`). Checked before the delivery is recorded, so nothing is to forget."""
    try:
        return job_for(payload)
    except ChatwootEventError as exc:
        raise ApiError(400, "invalid_event", str(exc), fields=exc.fields) from exc


def chatwoot_router(secret: Callable[[], str], connection: Callable[[], redis.Redis]) -> APIRouter:
    """The Chatwoot endpoint, reading the webhook secret and the Redis connection when each request comes."""
    router = APIRouter(tags=["integrations"], max_body_size=MAX_BODY_BYTES)

    @router.post(PATH, summary="Chatwoot agent-bot webhook")
    async def chatwoot_webhook(request: Request) -> dict:
        """200 {"status": "queued" | "ignored" | "duplicate"}. Errors (the API's shape, each its own type):
        401 `missing_signature`, `invalid_signature`, `invalid_timestamp`, `stale_timestamp`;
        400 `missing_delivery_id`, `invalid_json`, `invalid_event`; 413 `request_too_large`;
        503 `webhook_not_configured`, `queue_unavailable`."""
        body = await request.body()
        _signed_body(body, request.headers, secret())
        delivery = request.headers.get("x-chatwoot-delivery", "").strip()
        if not delivery:
            raise ApiError(400, "missing_delivery_id", "X-Chatwoot-Delivery is missing: deliveries cannot be "
                                                       "told apart.")
        job = _job(_event(body))
        client = connection()
        try:
            if not first_delivery(client, delivery):
                return {"status": "duplicate"}
        except redis.RedisError as exc:
            raise ApiError(503, "queue_unavailable", QUEUE_DOWN) from exc
        try:
            return {"status": "queued" if queue_job(client, job) else "ignored"}
        except BaseException as exc:
            # The delivery is recorded but nothing was queued: whatever failed, forget it, so that
            # Chatwoot's retry of it is processed rather than answered as a duplicate and lost.
            forget_delivery(client, delivery)
            if isinstance(exc, redis.RedisError):
                raise ApiError(503, "queue_unavailable", QUEUE_DOWN) from exc
            raise

    return router


def make_app() -> FastAPI:
    """The Chatwoot endpoint served alone, on the desk's settings and conversation store."""
    from chatbot.store.conversations import ConversationStore
    from common.settings import Settings

    settings = Settings.load()
    store = ConversationStore.from_settings(settings)
    app = FastAPI(title="Support desk: incoming webhooks")
    errors.install(app, lambda kind: None)  # the API's error shape here too
    app.include_router(chatwoot_router(lambda: settings.chatwoot_webhook_secret, lambda: store.client))
    app.add_middleware(RefusalInOurShape)
    return app
