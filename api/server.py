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
    # a full collection then takes microseconds instead of 66 ms (measured on the 2-core dev box), a
    # stall that would fall on whichever request triggers it. Full collections are rare (none in 2,000
    # benchmark requests), so this guards the far tail of a long-running server, not the p95.
    gc.freeze()
    uvicorn.run(app, host=host, port=port, log_level=log_level)
