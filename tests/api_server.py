"""The real API on uvicorn, on a free loopback port in a thread of the test process, and its keys."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import uvicorn

from tests.redis_server import free_port


@contextmanager
def serving(app, timeout: float = 30.0) -> Iterator[str]:
    """Serve `app` with uvicorn (its own event loop, in a thread) and yield its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


def desk_services(data_dir: Path):
    """The core's services on a fresh data directory (embedded Redis and Chroma, the demo articles)."""
    from chatbot.services import build_services
    from common.settings import Settings

    return build_services(Settings.load(secrets={}, data_dir=data_dir, session_ttl_days=1))
