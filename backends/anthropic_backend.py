"""Anthropic Messages API backend (Claude)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import anthropic
import httpx2

from backends.base import RemoteBackend, StreamEvent
from common.errors import (
    BackendAuthError,
    BackendError,
    BackendRateLimited,
    BackendUnavailable,
    ConfigurationError,
)
from common.types import ChatRequest, Stop

if TYPE_CHECKING:
    from common.settings import Settings

DEFAULT_MODEL = "claude-haiku-4-5"
OFFICIAL_URL = "https://api.anthropic.com"
MISSING_KEY = (
    "Missing setting: set ANTHROPIC_API_KEY in the environment or `anthropic_api_key` in .streamlit/secrets.toml"
)
# Error types that an `error` event inside a 200 stream carries, as the status they stand for.
STREAM_ERROR_STATUS = {"rate_limit_error": 429, "overloaded_error": 529, "api_error": 500}
# stop_reason as the product names it; others ("tool_use", "pause_turn") pass through as they are.
STOP_REASONS = {"end_turn": Stop.END, "stop_sequence": Stop.END, "max_tokens": Stop.LENGTH,
                "model_context_window_exceeded": Stop.LENGTH, "refusal": Stop.REFUSAL}


class AnthropicBackend(RemoteBackend):
    """Streams replies from the Messages API through the official `anthropic` client."""

    name = "anthropic"
    needs_key = True
    label = "Anthropic"
    # APITimeoutError subclasses APIConnectionError, so the timeouts are named first.
    timeout_errors = (anthropic.APITimeoutError, httpx2.TimeoutException)
    connection_errors = (anthropic.APIConnectionError, httpx2.TransportError)
    api_errors = (anthropic.AnthropicError,)
    dropped_errors = (httpx2.RemoteProtocolError,)
    stream_errors = (anthropic.AnthropicError, httpx2.HTTPError, ValueError)

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        retry_base_delay: float | None = None,
    ):
        if not api_key:
            raise ConfigurationError(MISSING_KEY)
        self._set_request_options(model or DEFAULT_MODEL, timeout, max_retries, retry_base_delay)
        self.base_url = base_url or OFFICIAL_URL
        self._api_key = api_key
        # The SDK's own retries are off: retries happen in `stream`, only before the first text.
        self.client = anthropic.Anthropic(
            api_key=api_key, base_url=self.base_url, timeout=timeout, max_retries=0
        )

    @classmethod
    def from_settings(cls, settings: Settings, model: str | None = None, **options: Any) -> "AnthropicBackend":
        """Build from settings: key, base URL, timeout and retries."""
        return cls(
            model=model or DEFAULT_MODEL,
            api_key=settings.require("anthropic_api_key"),
            base_url=settings.anthropic_base_url or None,
            timeout=settings.request_timeout,
            max_retries=settings.max_retries,
        )

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        # No temperature: API version 2026-10-21, which this SDK speaks, refuses every
        # sampling parameter (even at its default). No JSON switch either: the prompt asks.
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "messages": [{"role": m["role"], "content": m["content"]} for m in request.messages],
            "stream": True,
        }
        if request.system:
            params["system"] = request.system
        return params

    def _send(self, request: ChatRequest) -> tuple[Any, Iterator[Any]]:
        response = self.client.messages.create(**self._params(request))
        return response, iter(response)

    def _read(self, event: Any) -> StreamEvent:
        if event.type == "message_start":
            return StreamEvent(input_tokens=_input_tokens(event.message.usage))
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            return StreamEvent(event.delta.text or "")
        if event.type == "message_delta":
            usage = event.usage
            # Input tokens here, when present, are cumulative: they replace those of message_start.
            prompt = _input_tokens(usage) if usage.input_tokens is not None else None
            reason = event.delta.stop_reason or ""
            return StreamEvent(input_tokens=prompt, output_tokens=usage.output_tokens,
                               stop_reason=STOP_REASONS.get(reason, reason))
        return StreamEvent(finished=event.type == "message_stop")

    def _status(self, exc: Exception) -> int | None:
        """The HTTP status, or for an `error` event inside a stream, the status its type stands for."""
        if not isinstance(exc, anthropic.APIStatusError):
            return None
        if exc.status_code >= 400:
            return exc.status_code
        return STREAM_ERROR_STATUS.get(exc.type or "", 500)

    def _unreachable(self) -> str:
        return f"Could not reach {self.base_url}; check the network and ANTHROPIC_BASE_URL."

    def _status_error(self, exc: Exception) -> BackendError | None:
        status = self._status(exc)
        if status is None:
            return None
        if status in (401, 403):
            return BackendAuthError(f"Anthropic refused the API key ({status}): check ANTHROPIC_API_KEY.")
        if status == 429:
            return BackendRateLimited("Anthropic is limiting requests (429); wait a minute, then retry.")
        if status == 529:
            return BackendUnavailable("Anthropic is overloaded (529); try again shortly.")
        if status >= 500:
            return BackendUnavailable(f"Anthropic is having trouble ({status}); try again shortly.")
        detail = str(exc.api_message or exc.message).replace(self._api_key, "***")[:200]
        return BackendError(f"Anthropic rejected the request ({status}): {detail}")


def _input_tokens(usage: Any) -> int:
    # Cached prompt tokens are counted apart; the prompt is their sum.
    return sum(
        getattr(usage, name, None) or 0
        for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
