"""Serving the API with uvicorn: `python -m chatbot serve` and `make api`."""

from __future__ import annotations

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
    uvicorn.run(create_app(services), host=host, port=port, log_level=log_level)
