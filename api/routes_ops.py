"""`GET /health` (each part reported) and `GET /metrics` (Prometheus exposition); neither needs a key."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.desk import Desk, desk
from common.errors import ChatbotError

router = APIRouter(tags=["operations"])


def _check(probe) -> dict:
    try:
        return {"ok": True, **(probe() or {})}
    except ChatbotError as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a health check reports every failure, it never raises
        return {"ok": False, "error": f"{exc.__class__.__name__}: {exc}"}


@router.get("/health", summary="The conversation store, the vector store and the backend, each reported")
def health(the_desk: Desk = Depends(desk)) -> JSONResponse:
    services = the_desk.services
    store = _check(lambda: {"conversations": services.store.count()} if services.store.ping() else None)
    vectors = _check(lambda: services.knowledge.stats())
    if vectors["ok"] and services.knowledge.degraded:
        vectors["degraded"] = services.knowledge.degraded
    backend = {"ok": not the_desk.backend_error, "name": the_desk.backend.name, "model": the_desk.backend.model}
    if the_desk.backend_error:
        backend.update(error=the_desk.backend_error, answering="offline")
    elif the_desk.backend_failure:
        backend.update(ok=False, last_failure=the_desk.backend_failure)
    parts = {"store": store, "vector_store": vectors, "backend": backend}
    status = "ok" if all(p["ok"] for p in parts.values()) else ("down" if not store["ok"] else "degraded")
    return JSONResponse({"status": status, **parts}, status_code=503 if status == "down" else 200)


@router.get("/metrics", summary="Prometheus metrics: turns, latencies, time to first token, tokens, "
                                "fallbacks, errors by kind")
def metrics(the_desk: Desk = Depends(desk)) -> Response:
    return Response(the_desk.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
