"""Anthropic Messages API backend (Claude)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Iterator

import anthropic
import httpx2

from common.types import ChatRequest, Usage
from adapters.base import NoTextYet, RemoteBackend, retry_after_seconds
from common.errors import (
    BackendAuthError,
    BackendError,
    BackendRateLimited,
    BackendStreamBroken,
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
)

if TYPE_CHECKING:
    from common.settings import Settings

DEFAULT_MODEL = "claude-haiku-4-5"
OFFICIAL_URL = "https://api.anthropic.com"
MISSING_KEY = (
    "Missing setting: set ANTHROPIC_API_KEY in the environment or `anthropic_api_key` in .streamlit/secrets.toml"
)
# Error types that an `error` event inside a 200 stream carries, as the status they stand for.
STREAM_ERROR_STATUS = {"rate_limit_error": 429, "overloaded_error": 529, "api_error": 500}



class AnthropicBackend(RemoteBackend):
    """Streams replies from the Messages API through the official `anthropic` client."""

    name = "anthropic"

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
    def from_settings(cls, settings: Settings, model: str | None = None) -> "AnthropicBackend":
        """Build from settings: key, base URL, timeout and retries."""
        return cls(
            model=model or DEFAULT_MODEL,
            api_key=settings.require("anthropic_api_key"),
            base_url=settings.anthropic_base_url or None,
            timeout=settings.request_timeout,
            max_retries=settings.max_retries,
        )

    def stream(self, request: ChatRequest) -> Iterator[str | Usage]:
        """Yield the reply's text as it arrives, then the usage the API reported."""
        response, events, head = self._open_with_retries(
            lambda: self._open(request), is_retryable=_is_retryable, retry_after=_retry_after
        )
        stopped, input_tokens, output_tokens = False, None, None
        try:
            for event in itertools.chain(head, events):
                if event.type == "message_start":
                    input_tokens = _input_tokens(event.message.usage)
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    if event.delta.text:
                        yield event.delta.text
                elif event.type == "message_delta":
                    output_tokens = event.usage.output_tokens
                    if event.usage.input_tokens is not None:  # cumulative when present
                        input_tokens = _input_tokens(event.usage)
                elif event.type == "message_stop":
                    stopped = True
        except (anthropic.AnthropicError, httpx2.HTTPError, ValueError) as exc:
            # Text already reached the reader, so this is not retried.
            raise BackendStreamBroken(f"Anthropic stopped mid-reply ({_reason(exc)}); ask again.") from exc
        finally:
            response.close()
        if not stopped:
            raise BackendStreamBroken("Anthropic ended the reply before it was complete; ask again.")
        if input_tokens is not None or output_tokens is not None:
            yield Usage(input_tokens or 0, output_tokens or 0)

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

    def _open(self, request: ChatRequest) -> tuple[Any, Iterator[Any], list[Any]]:
        """Send the request and read up to the first text, so that failures before it can be retried."""
        response = self.client.messages.create(**self._params(request))
        events = iter(response)
        head = []
        try:
            for event in events:
                head.append(event)
                if event.type == "content_block_delta" and getattr(event.delta, "text", ""):
                    return response, events, head
        except BaseException:
            response.close()
            raise
        if not any(event.type == "message_stop" for event in head):
            raise NoTextYet()
        return response, events, head

    def _translate(self, exc: Exception) -> BackendError:
        if isinstance(exc, NoTextYet):
            return BackendStreamBroken("Anthropic closed the reply before sending any text; ask again.")
        if isinstance(exc, (anthropic.APITimeoutError, httpx2.TimeoutException)):
            return BackendTimeout(f"Anthropic did not answer within {self.timeout:g} s; try again.")
        if isinstance(exc, (anthropic.APIConnectionError, httpx2.TransportError)):
            return BackendUnavailable(
                f"Could not reach {self.base_url}; check the network and ANTHROPIC_BASE_URL."
            )
        if isinstance(exc, anthropic.APIStatusError):
            status = _status(exc)
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
        return BackendError(f"Anthropic failed: {_reason(exc)}")


def _status(exc: anthropic.APIStatusError) -> int:
    """The HTTP status, or for an `error` event inside a stream, the status its type stands for."""
    if exc.status_code >= 400:
        return exc.status_code
    return STREAM_ERROR_STATUS.get(exc.type or "", 500)


def _is_retryable(exc: Exception) -> bool:
    if isinstance(exc, (NoTextYet, anthropic.APIConnectionError, httpx2.TransportError)):
        return True
    if isinstance(exc, anthropic.APIStatusError):
        return _status(exc) == 429 or _status(exc) >= 500
    return False


def _input_tokens(usage: Any) -> int:
    # Cached prompt tokens are counted apart; the prompt is their sum.
    return sum(
        getattr(usage, name, None) or 0
        for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )


def _retry_after(exc: Exception) -> float:
    """Seconds the server asked to wait, from the failed response's headers."""
    return retry_after_seconds(getattr(exc, "response", None))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (anthropic.APITimeoutError, httpx2.TimeoutException)):
        return "timed out"
    if isinstance(exc, (anthropic.APIConnectionError, httpx2.TransportError)):
        return "connection lost"
    if isinstance(exc, anthropic.AnthropicError):
        return "the server reported an error"
    return f"unexpected {type(exc).__name__}"
