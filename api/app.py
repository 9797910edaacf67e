"""The FastAPI app: `create_app(services)` with every area's router, typed errors and request metrics."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from starlette.routing import Match

from api import errors
from api.body_limit import MAX_BODY_BYTES, RefusalInOurShape
from api.desk import Desk, build_desk
from api.key_first import KeyFirst
from api.route_match import matching_routes
from api.query import known_query
from api.routes_chat import router as chat_router
from api.routes_classify import router as classify_router
from api.routes_conversations import router as conversations_router
from api.routes_openai import router as openai_router
from api.routes_ops import router as ops_router
from api.routes_prompts import router as prompts_router
from api.webhooks_in import chatwoot_router
from backends.base import Backend
from chatbot.services import Services

# Every area's routes; another area adds its router here (or passes it to create_app).
ROUTERS: list[APIRouter] = [chat_router, classify_router, conversations_router, prompts_router, openai_router,
                            ops_router]
DESCRIPTION = """The support desk over HTTP: the same turn as the app's Chat page (knowledge base,
routing, triage, citations, prompts), conversations, batch triage, and an OpenAI-compatible
endpoint. Send an API key as `Authorization: Bearer desk_...`; POSTs that write accept an
`Idempotency-Key`. Errors are JSON: `{"error": {"type", "message"}}`."""


def create_app(services: Services, backend: Backend | None = None,
               routers: list[APIRouter] | None = None) -> FastAPI:
    """The API over `services`, answering with `backend` (default: the one the settings name)."""
    the_desk: Desk = build_desk(services, backend)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await the_desk.key_check.close()

    app = FastAPI(title="Support desk API", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.desk = the_desk
    errors.install(app, lambda kind: the_desk.metrics.errors.labels(kind).inc())
    # The body cap on each router, not on FastAPI(...): see api/body_limit.py. A route with its own
    # `max_body_size` (the batch upload) keeps it.
    # Every router's GETs refuse a query parameter they do not take (api/query.py).
    for router in [*ROUTERS, *(routers or [])]:
        app.include_router(router, max_body_size=MAX_BODY_BYTES, dependencies=[Depends(known_query)])
    # Chatwoot's agent bot: signed by Chatwoot (no API key), settings and Redis read per request.
    app.include_router(chatwoot_router(lambda: services.settings.chatwoot_webhook_secret,
                                       lambda: services.store.client))  # its own 1 MB cap

    app.add_middleware(KeyFirst)
    app.add_middleware(RefusalInOurShape)
    app.add_middleware(RequestTimer, metrics=the_desk.metrics)  # added last: it runs first, timing the refusals too
    return app


class RequestTimer:
    """Each request's time to its last byte, by route and status (plain ASGI: it leaves streams alone)."""

    def __init__(self, app, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.requests.labels(route_label(scope), scope["method"], str(status)).observe(
                time.perf_counter() - started)


def route_label(scope) -> str:
    """The path template of the request's route (`/v1/conversations/{conversation_id}`), `unmatched` for none.

    The router names it in the scope once it routed the request. A request answered before routing
    (the key check's 401 or 429, api/key_first.py) is matched here against the app's routes as the
    router matches them, so that a key's refusals count under the route it called.
    """
    routed = scope.get("route")
    if routed is not None:
        return getattr(routed, "path", "unmatched")
    partial = None
    for match, route in matching_routes(scope):
        if match is Match.FULL:
            return route.path
        if partial is None:  # the path, another method (405)
            partial = route.path
    return partial or "unmatched"
