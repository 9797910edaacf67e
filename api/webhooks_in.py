"""Incoming webhooks: Chatwoot's agent bot posts each event here; it is checked, deduplicated and queued.

`chatwoot_router(...)` is an APIRouter for the API app (`app.include_router(...)`); `make_app()`
serves it alone: `uvicorn api.webhooks_in:make_app --factory --port 8010`. The answer is sent in
milliseconds (signature, one Redis SET, one enqueue); the reply itself is written by the worker
(`python -m chatbot webhook-worker`) and posted back through Chatwoot's API.
"""

from __future__ import annotations

import json
import time
from typing import Callable

import redis
from fastapi import APIRouter, FastAPI, HTTPException, Request

from chatbot.helpdesk.chatwoot import (ChatwootSignatureError, first_delivery, forget_delivery, queue_event,
                                       verify_signature)
from common.errors import ConfigurationError

PATH = "/v1/integrations/chatwoot"


# Chatwoot's events are a few kB; the endpoint is open to anyone until the signature is checked, so a
# body is read only up to this many bytes, not into memory whatever its size.
MAX_BODY_BYTES = 1_000_000


async def _read_capped(request: Request) -> bytes:
    """The body, or HTTPException 413 once it passes MAX_BODY_BYTES."""
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(status_code=413, detail=f"The body is over {MAX_BODY_BYTES:,} bytes; "
                                                        "a Chatwoot event is a few kB.")
    return bytes(body)


def chatwoot_router(secret: Callable[[], str], connection: Callable[[], redis.Redis]) -> APIRouter:
    """The Chatwoot endpoint, reading the webhook secret and the Redis connection when each request comes."""
    router = APIRouter(tags=["integrations"])

    @router.post(PATH, summary="Chatwoot agent-bot webhook")
    async def chatwoot_webhook(request: Request) -> dict:
        """200 {"status": "queued" | "ignored" | "duplicate"}; 401 for a bad signature, 400 for a bad body."""
        body = await _read_capped(request)
        try:
            verify_signature(secret(), body, request.headers.get("x-chatwoot-timestamp", ""),
                             request.headers.get("x-chatwoot-signature", ""), time.time())
        except ChatwootSignatureError as exc:
            raise HTTPException(status_code=401, detail=str(exc)) from exc
        except ConfigurationError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        delivery = request.headers.get("x-chatwoot-delivery", "").strip()
        if not delivery:
            raise HTTPException(status_code=400, detail="X-Chatwoot-Delivery is missing: deliveries cannot be "
                                                        "told apart.")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser goes
            raise HTTPException(status_code=400, detail=f"The body is not JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise HTTPException(status_code=400, detail="The body is not a JSON object.")
        client = connection()
        try:
            if not first_delivery(client, delivery):
                return {"status": "duplicate"}
        except redis.RedisError as exc:
            raise HTTPException(status_code=503, detail="The queue is unavailable; try again.") from exc
        try:
            return {"status": "queued" if queue_event(client, payload) else "ignored"}
        except redis.RedisError as exc:
            # Chatwoot retries a delivery that failed: forget it, so the retry is not taken for a duplicate.
            forget_delivery(client, delivery)
            raise HTTPException(status_code=503, detail="The queue is unavailable; try again.") from exc
        except (AttributeError, TypeError, ValueError) as exc:  # signed, but fields not of Chatwoot's types
            forget_delivery(client, delivery)
            raise HTTPException(status_code=400, detail=f"The event is not in Chatwoot's shape ({exc}).") from exc

    return router


def make_app() -> FastAPI:
    """The Chatwoot endpoint served alone, on the desk's settings and conversation store."""
    from chatbot.store.conversations import ConversationStore
    from common.settings import Settings

    settings = Settings.load()
    store = ConversationStore.from_settings(settings)
    app = FastAPI(title="Support desk: incoming webhooks")
    app.include_router(chatwoot_router(lambda: settings.chatwoot_webhook_secret, lambda: store.client))
    return app
