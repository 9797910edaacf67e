"""Build a backend by name from settings; imports each provider's SDK only when chosen."""

from __future__ import annotations

from adapters.base import Backend
from common.settings import Settings
from common.errors import ConfigurationError

BACKENDS = ("offline", "openai", "anthropic", "ollama", "local")


def make_backend(name: str, settings: Settings, model: str | None = None, **options) -> Backend:
    """A ready backend, or ConfigurationError naming the missing setting."""
    model = model or None
    if name == "offline":
        from adapters.offline import OfflineBackend

        return OfflineBackend()
    if name == "openai":
        from adapters.openai_backend import OpenAIBackend

        return OpenAIBackend.from_settings(settings, model=model)
    if name == "anthropic":
        from adapters.anthropic_backend import AnthropicBackend

        return AnthropicBackend.from_settings(settings, model=model)
    if name == "ollama":
        from adapters.ollama_backend import OllamaBackend

        return OllamaBackend.from_settings(settings, model=model)
    if name == "local":
        from adapters.local import LocalBackend

        if options.get("model_path") or options.get("adapter_path"):
            return LocalBackend(
                options.get("model_path") or settings.require("local_model_path"),
                adapter_path=options.get("adapter_path") or None,
            )
        return LocalBackend.from_settings(settings, model=model)
    raise ConfigurationError(f"Unknown backend {name!r}; choose one of {', '.join(BACKENDS)} (CHATBOT_BACKEND)")
