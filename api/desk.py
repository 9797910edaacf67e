"""What every route shares: the core's services, the backend, keys, limits, idempotency, metrics, jobs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from fastapi import Request

from api.batch import BatchJobs
from api.idempotency import Idempotency
from api.key_check import KeyCheck
from api.metrics import Metrics
from backends.base import Backend
from backends.registry import make_backend
from chatbot.access.api_keys import ApiKeys
from chatbot.services import Services
from chatbot.store.messages import INTERRUPTED_TEXT, TurnMeta
from common.errors import ChatbotError

log = logging.getLogger(__name__)
MODEL_ID = "support-desk"  # the name the OpenAI-compatible endpoint lists the desk under


@dataclass
class Desk:
    """Long-lived objects of one API process; the routes reach it through `desk(request)`."""

    services: Services
    backend: Backend
    keys: ApiKeys
    key_check: KeyCheck  # `keys`' check of each request, awaited on the event loop
    idempotency: Idempotency
    jobs: BatchJobs
    metrics: Metrics = field(default_factory=Metrics)
    # Why the configured backend could not be built ("" when it was): the offline backend answers.
    backend_error: str = ""
    # Seconds between SSE pings on a quiet stream (proxies drop idle connections after 30-60 s).
    ping_seconds: float = 15.0
    model_id: str = MODEL_ID
    # The configured backend's last failed turn ({"at", "error"}), cleared by its next answer.
    backend_failure: dict | None = None

    def turn_ended(self, endpoint: str, meta: TurnMeta) -> None:
        """Count a finished turn for /metrics and keep the backend's last failure for /health."""
        self.metrics.observe_turn(endpoint, meta)
        if meta.backend != self.backend.name:
            return  # the offline fallback or a handoff says nothing about the configured backend
        if meta.error and meta.error != INTERRUPTED_TEXT:
            self.backend_failure = {"at": meta.created_at, "error": meta.error}
        elif not meta.error:
            self.backend_failure = None


def build_desk(services: Services, backend: Backend | None = None) -> Desk:
    """The desk over `services`, with `backend` or the one the settings name (offline if it cannot start)."""
    error = ""
    if backend is None:
        settings = services.settings
        try:
            backend = make_backend(settings.backend, settings, settings.model or None)
        except ChatbotError as exc:
            log.warning("Backend %s unavailable, answering offline: %s", settings.backend, exc)
            backend, error = services.offline_backend(), str(exc)
    store = services.store
    keys = ApiKeys(lambda: store.client)
    return Desk(
        services=services, backend=backend, backend_error=error,
        keys=keys, key_check=KeyCheck(keys, lambda: store.client),
        idempotency=Idempotency(lambda: store.client), jobs=BatchJobs(lambda: store.client),
    )


def desk_of(request: Request) -> Desk:
    """The Desk of the app serving `request`."""
    return request.app.state.desk


async def desk(request: Request) -> Desk:
    """`desk_of` as a FastAPI dependency: async, so that FastAPI runs it on the event loop instead of
    sending it to a worker thread, as it does every plain function (a thread hop per request)."""
    return request.app.state.desk
