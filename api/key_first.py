"""The API key checked before the app reads a request (`KeyFirst`).

FastAPI parses and validates a request's body before it solves the route's dependencies
(fastapi/routing.py, `get_request_handler`), so with the key check a dependency only, a keyless
caller sending a malformed body got the 422 naming the body's fields, and the server parsed
bodies for anyone. This plain ASGI middleware checks the key of every `/v1` request before the
app runs (the help desks' webhooks under `/v1/integrations/`, signed by the help desk, excepted):
without a live key the answer is 401 (or 429 over the key's rate), whatever the body. The route's
dependency (api/auth.py) finds the key in `request.state` and checks only its role, so an agent key
on an admin route is still refused with 403, after its body is read.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import Request

from api import errors
from api.auth import live_key
from api.desk import desk_of

log = logging.getLogger(__name__)
KEYLESS = ("/v1/integrations/",)


def needs_key(scope) -> bool:
    path = scope["path"]
    return scope["method"] != "OPTIONS" and path.startswith("/v1/") and not path.startswith(KEYLESS)


class KeyFirst:
    """ASGI middleware: a `/v1` request's API key checked (verify and rate window) before the app runs."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not needs_key(scope):
            return await self.app(scope, receive, send)
        request = Request(scope)  # scope["app"] is the FastAPI app: Starlette sets it before its middleware
        # The body's first piece is asked for at once, beside the check (not parsed): once a client has
        # gone, uvicorn answers every receive with a disconnect, so a client that sent its message and
        # left at once would lose it; and a refused caller is answered without waiting for its body.
        first = asyncio.ensure_future(receive())
        try:
            await live_key(request)
        except Exception as exc:  # noqa: BLE001 - every refusal (or Redis down) answered in the API's shape
            first.cancel()
            error = errors.describe(exc)
            if error.kind == "internal_error":
                log.exception("Key check failed on %s %s", scope["method"], scope["path"], exc_info=exc)
            desk_of(request).metrics.errors.labels(error.kind).inc()
            return await errors.response(error)(scope, receive, send)

        async def receive_again() -> dict:
            nonlocal first
            if first is None:
                return await receive()
            message, first = await first, None
            return message

        await self.app(scope, receive_again, send)
