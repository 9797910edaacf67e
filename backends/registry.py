"""Backends by name; each provider's module, and so its SDK, is imported only when that backend is chosen."""

from __future__ import annotations

from importlib import import_module
from typing import Callable

from backends.base import Backend
from common.errors import ChatbotError, ConfigurationError
from common.settings import Settings


def _lazy(module: str, class_name: str) -> Callable[[], type[Backend]]:
    """A loader of one backend class that imports its module on first call."""
    return lambda: getattr(import_module(module), class_name)


# Name -> loader of the backend's class, whose `from_settings` builds it. Adding a backend: its own
# module, one line here, and its settings fields in common/settings.py. Pages and the CLI offer
# them in this order.
REGISTRY: dict[str, Callable[[], type[Backend]]] = {
    "offline": _lazy("backends.offline", "OfflineBackend"),
    "openai": _lazy("backends.openai_backend", "OpenAIBackend"),
    "anthropic": _lazy("backends.anthropic_backend", "AnthropicBackend"),
    "ollama": _lazy("backends.ollama_backend", "OllamaBackend"),
    "local": _lazy("backends.local", "LocalBackend"),
}
BACKENDS = tuple(REGISTRY)


def backend_class(name: str) -> type[Backend]:
    """The class registered as `name`, for its capability flags; ConfigurationError if there is none."""
    if name not in REGISTRY:
        raise ConfigurationError(f"Unknown backend {name!r}; choose one of {', '.join(BACKENDS)} (CHATBOT_BACKEND)")
    return REGISTRY[name]()


def make_backend(name: str, settings: Settings, model: str | None = None, **options) -> Backend:
    """A ready backend, or ConfigurationError naming the missing or wrong setting.

    Whatever a backend's own checks miss (a folder that exists but holds no model, a file where a
    folder is expected, a malformed value an SDK refuses) becomes a ConfigurationError too: the
    pages show its message and fall back to the offline backend, never a traceback.
    """
    cls = backend_class(name)
    try:
        return cls.from_settings(settings, model=model or None, **options)
    except ChatbotError:
        raise
    except Exception as exc:  # noqa: BLE001 - every bad setting ends the same way
        reason = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:300]
        raise ConfigurationError(f"The {name} backend cannot start with these settings: {reason}") from exc
