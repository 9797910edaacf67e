"""OpenAI chat completions: OpenAI itself, or any OpenAI-compatible server (vLLM, llama.cpp, LM Studio)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Iterator

import httpx2
import openai

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

DEFAULT_MODEL = "gpt-4o-mini"
OFFICIAL_URL = "https://api.openai.com/v1"
MISSING_KEY = (
    "Missing setting: set OPENAI_API_KEY in the environment or `openai_api_key` in .streamlit/secrets.toml"
)
# Compatible servers usually need no key, but the SDK refuses to start without one.
PLACEHOLDER_KEY = "no-key-needed"



class OpenAIBackend(RemoteBackend):
    """Streams replies from the Chat Completions API through the official `openai` client."""

    name = "openai"

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
        self._who = "OpenAI" if not base_url else f"the model server at {base_url}"
        # The SDK's own retries are off: retries happen in `stream`, only before the first text.
        self.client = openai.OpenAI(
            api_key=api_key or PLACEHOLDER_KEY, base_url=self.base_url, timeout=timeout, max_retries=0
        )

    @classmethod
    def from_settings(cls, settings: Settings, model: str | None = None) -> "OpenAIBackend":
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

    def stream(self, request: ChatRequest) -> Iterator[str | Usage]:
        """Yield the reply's text as it arrives, then the usage the server reported."""
        response, chunks, head = self._open_with_retries(
            lambda: self._open(request), is_retryable=self._is_retryable, retry_after=_retry_after
        )
        finished, usage, who = False, None, _cap(self._who)
        try:
            for chunk in itertools.chain(head, chunks):
                if chunk.usage is not None:
                    usage = Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
                for choice in chunk.choices[:1]:
                    if choice.delta is not None and choice.delta.content:
                        yield choice.delta.content
                    finished = finished or choice.finish_reason is not None
        except (openai.OpenAIError, httpx2.HTTPError, ValueError) as exc:
            # Text already reached the reader, so this is not retried.
            raise BackendStreamBroken(f"{who} stopped mid-reply ({_reason(exc)}); ask again.") from exc
        finally:
            response.close()
        if not finished:
            raise BackendStreamBroken(f"{who} ended the reply before it was complete; ask again.")
        if usage is not None:
            yield usage

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": m["role"], "content": m["content"]} for m in request.messages]
        params: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": request.temperature,
            # `max_tokens` rather than `max_completion_tokens`: every compatible server understands it.
            "max_tokens": request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.json_mode:
            params["response_format"] = {"type": "json_object"}
        return params

    def _open(self, request: ChatRequest) -> tuple[Any, Iterator[Any], list[Any]]:
        """Send the request and read up to the first text, so that failures before it can be retried."""
        response = self.client.chat.completions.create(**self._params(request))
        chunks = iter(response)
        head = []
        try:
            for chunk in chunks:
                head.append(chunk)
                if any(c.delta is not None and c.delta.content for c in chunk.choices[:1]):
                    return response, chunks, head
        except BaseException:
            response.close()
            raise
        if not any(c.finish_reason for chunk in head for c in chunk.choices[:1]):
            raise NoTextYet()
        return response, chunks, head

    def _is_retryable(self, exc: Exception) -> bool:
        if isinstance(exc, (NoTextYet, openai.APIConnectionError, httpx2.TransportError)):
            return True
        if isinstance(exc, openai.APIStatusError):
            # An exhausted quota also answers 429, but waiting will not refill it.
            return (exc.status_code == 429 and exc.code != "insufficient_quota") or exc.status_code >= 500
        # An error event inside the stream: the server failed while generating.
        return isinstance(exc, openai.APIError) and exc.type == "server_error"

    def _translate(self, exc: Exception) -> BackendError:
        who = _cap(self._who)
        if isinstance(exc, NoTextYet):
            return BackendStreamBroken(f"{who} closed the reply before sending any text; ask again.")
        if isinstance(exc, (openai.APITimeoutError, httpx2.TimeoutException)):
            return BackendTimeout(f"{who} did not answer within {self.timeout:g} s; try again.")
        if isinstance(exc, (openai.APIConnectionError, httpx2.TransportError)):
            return BackendUnavailable(f"Could not reach {self.base_url}; check the network and OPENAI_BASE_URL.")
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
        return BackendError(f"{who} failed: {_reason(exc)}")

    def _detail(self, exc: openai.APIError) -> str:
        body = exc.body
        text = body.get("message") if isinstance(body, dict) else None
        text = str(text or exc.message)
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text[:200]


def _retry_after(exc: Exception) -> float:
    """Seconds the server asked to wait, from the failed response's headers."""
    return retry_after_seconds(getattr(exc, "response", None))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (openai.APITimeoutError, httpx2.TimeoutException)):
        return "timed out"
    if isinstance(exc, (openai.APIConnectionError, httpx2.TransportError)):
        return "connection lost"
    if isinstance(exc, openai.OpenAIError):
        return "the server reported an error"
    return f"unexpected {type(exc).__name__}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
