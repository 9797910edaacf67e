"""Serving the API with uvicorn: `python -m chatbot serve` and `make api`."""

from __future__ import annotations

import gc
import logging

import uvicorn

from api.app import create_app
from chatbot.services import build_services
from common.settings import Settings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, backend: str = "", model: str = "",
          log_level: str = "info") -> None:
    """Build the shared services (the app's data directory, Redis and Chroma) and serve until stopped.

    One worker process: the embedded Redis and Chroma are shared with the app through the data
    directory; with `REDIS_URL` and `CHROMA_HOST` several API processes can run side by side.
    """
    overrides = {k: v for k, v in (("backend", backend), ("model", model)) if v}
    settings = Settings.load(**overrides) if overrides else Settings.load()
    services = build_services(settings)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    app = create_app(services)
    # What is loaded by now (the embedding model, Chroma, the routes: ~140,000 objects) lives as long
    # as the process. gc.freeze (Python docs, "gc.freeze") moves it out of the collector's sight:
    # a full collection then takes microseconds instead of ~66 ms, a stall that fell on whichever
    # request happened to trigger it (measured on the 2-core dev box, BENCHMARKS.md "HTTP API").
    gc.freeze()
    uvicorn.run(app, host=host, port=port, log_level=log_level)
