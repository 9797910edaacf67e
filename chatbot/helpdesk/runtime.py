"""What a worker process builds once for help desk jobs: the settings, the shared services, a Chatbot."""

from __future__ import annotations

import logging
from functools import lru_cache

from backends.registry import make_backend
from chatbot.services import Services, build_services
from chatbot.turn.bot import Chatbot
from common.errors import ConfigurationError
from common.settings import Settings

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.load()


@lru_cache(maxsize=1)
def services() -> Services:
    """The knowledge base, store and prompts, built on the first job of this process (a few seconds)."""
    return build_services(settings())


def chatbot() -> Chatbot:
    """A Chatbot on the configured backend; the offline one when that backend cannot start (logged)."""
    shared = services()
    try:
        backend = make_backend(shared.settings.backend, shared.settings)
    except ConfigurationError as exc:
        log.warning("Help desk replies use the offline backend: %s", exc)
        backend = make_backend("offline", shared.settings)
    return shared.build_chatbot(backend)
