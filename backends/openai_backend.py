"""OpenAI chat completions: OpenAI itself, or any OpenAI-compatible server (vLLM, llama.cpp, LM Studio)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import httpx2
import openai

from backends.base import RemoteBackend, StreamEvent
from backends.openai_models import generation_params
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

DEFAULT_MODEL = "gpt-4o-mini"
OFFICIAL_URL = "https://api.openai.com/v1"
MISSING_KEY = (
    "Missing setting: set OPENAI_API_KEY in the environment or `openai_api_key` in .streamlit/secrets.toml"
)
# Compatible servers usually need no key, but the SDK refuses to start without one.
PLACEHOLDER_KEY = "no-key-needed"
# finish_reason as the product names it; others ("tool_calls", ...) pass through as they are.
STOP_REASONS = {"stop": Stop.END, "length": Stop.LENGTH, "content_filter": Stop.REFUSAL}


class OpenAIBackend(RemoteBackend):
    """Streams replies from the Chat Completions API through the official `openai` client."""

    name = "openai"
    needs_key = True
    # APITimeoutError subclasses APIConnectionError, so the timeouts are named first.
    timeout_errors = (openai.APITimeoutError, httpx2.TimeoutException)
    connection_errors = (openai.APIConnectionError, httpx2.TransportError)
    api_errors = (openai.OpenAIError,)
    dropped_errors = (httpx2.RemoteProtocolError,)
    stream_errors = (openai.OpenAIError, httpx2.HTTPError, ValueError)

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        retry_base_delay: float | None = None,
    ):
        if not api_key and not base_url:
            raise ConfigurationError(MISSING_KEY)
        self._set_request_options(model or DEFAULT_MODEL, timeout, max_retries, retry_base_delay)
        self.base_url = base_url or OFFICIAL_URL
        self._api_key = api_key or ""
        self.label = "OpenAI" if not base_url else f"The model server at {base_url}"
        # The SDK's own retries are off: retries happen in `stream`, only before the first text.
        self.client = openai.OpenAI(
            api_key=api_key or PLACEHOLDER_KEY, base_url=self.base_url, timeout=timeout, max_retries=0
        )

    @classmethod
    def from_settings(cls, settings: Settings, model: str | None = None, **options: Any) -> "OpenAIBackend":
        """Build from settings: key, base URL (for compatible servers), timeout and retries."""
        if not settings.openai_base_url:
            settings.require("openai_api_key")
        return cls(
            model=model or DEFAULT_MODEL,
            api_key=settings.openai_api_key or None,
            base_url=settings.openai_base_url or None,
            timeout=settings.request_timeout,
            max_retries=settings.max_retries,
        )

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": m["role"], "content": m["content"]} for m in request.messages]
        params: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            # `max_tokens` and a temperature, except for the reasoning models that refuse them.
            **generation_params(self.model, request.temperature, request.max_tokens),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.json_mode:
            params["response_format"] = {"type": "json_object"}
        return params

    def _send(self, request: ChatRequest) -> tuple[Any, Iterator[Any]]:
        response = self.client.chat.completions.create(**self._params(request))
        return response, iter(response)

    def _read(self, chunk: Any) -> StreamEvent:
        usage = chunk.usage
        tokens = (usage.prompt_tokens or 0, usage.completion_tokens or 0) if usage is not None else (None, None)
        # Only the first choice is asked for; the usage chunk at the end has none.
        choice = chunk.choices[0] if chunk.choices else None
        delta = choice.delta if choice is not None else None
        text = delta.content if delta is not None else None
        finish = choice.finish_reason if choice is not None else None
        stop = STOP_REASONS.get(finish, finish or "")
        # A refusal arrives in its own field, in pieces like text, and the chunk then ends with "stop".
        refusal = getattr(delta, "refusal", None) if delta is not None else None
        if refusal:
            return StreamEvent(refusal, *tokens, finished=finish is not None, stop_reason=Stop.REFUSAL)
        return StreamEvent(text or "", *tokens, finished=finish is not None, stop_reason=stop)

    def _is_retryable(self, exc: Exception) -> bool:
        if isinstance(exc, openai.APIStatusError) and exc.status_code == 429 and exc.code == "insufficient_quota":
            return False  # an exhausted quota also answers 429, but waiting will not refill it
        # An error event inside the stream (no status) is the server failing while generating.
        in_stream = isinstance(exc, openai.APIError) and not isinstance(exc, openai.APIStatusError)
        return (in_stream and exc.type == "server_error") or super()._is_retryable(exc)

    def _unreachable(self) -> str:
        return f"Could not reach {self.base_url}; check the network and OPENAI_BASE_URL."

    def _status_error(self, exc: Exception) -> BackendError | None:
        who = self.label
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            if status in (401, 403):
                return BackendAuthError(f"{who} refused the API key ({status}): check OPENAI_API_KEY.")
            if status == 429 and exc.code == "insufficient_quota":
                return BackendError(f"{who} says the account has run out of quota (429): check its billing.")
            if status == 429:
                return BackendRateLimited(f"{who} is limiting requests (429); wait a minute and try again.")
            if status >= 500:
                return BackendUnavailable(f"{who} is having trouble ({status}); try again shortly.")
            return BackendError(f"{who} rejected the request ({status}): {self._detail(exc)}")
        if isinstance(exc, openai.APIError):
            return BackendUnavailable(f"{who} failed while answering: {self._detail(exc)}")
        return None

    def _detail(self, exc: openai.APIError) -> str:
        body = exc.body
        text = body.get("message") if isinstance(body, dict) else None
        text = str(text or exc.message)
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text[:200]
