"""Ollama backend: models served by a local or remote `ollama serve`."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Iterator

import httpx
import ollama

from common.types import ChatRequest, Usage
from adapters.base import NoTextYet, RemoteBackend, retry_after_seconds
from common.errors import (
    BackendAuthError,
    BackendError,
    BackendRateLimited,
    BackendStreamBroken,
    BackendTimeout,
    BackendUnavailable,
)

if TYPE_CHECKING:
    from common.settings import Settings

DEFAULT_MODEL = "llama3.2"
DEFAULT_HOST = "http://127.0.0.1:11434"



class OllamaBackend(RemoteBackend):
    """Streams replies from Ollama's /api/chat through the official `ollama` client."""

    name = "ollama"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        host: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        retry_base_delay: float | None = None,
    ):
        self._set_request_options(model or DEFAULT_MODEL, timeout, max_retries, retry_base_delay)
        self.host = host or DEFAULT_HOST
        # The client has no retries of its own; they happen in `stream`, only before the first text.
        self.client = ollama.Client(host=self.host, timeout=timeout)

    @classmethod
    def from_settings(cls, settings: Settings, model: str | None = None) -> "OllamaBackend":
        """Build from settings: host (OLLAMA_HOST), timeout and retries; Ollama needs no key."""
        return cls(
            model=model or DEFAULT_MODEL,
            host=settings.ollama_host or None,
            timeout=settings.request_timeout,
            max_retries=settings.max_retries,
        )

    def stream(self, request: ChatRequest) -> Iterator[str | Usage]:
        """Yield the reply's text as it arrives, then the token counts Ollama reported."""
        parts, head = self._open_with_retries(
            lambda: self._open(request), is_retryable=_is_retryable, retry_after=_retry_after
        )
        usage = None
        try:
            for part in itertools.chain(head, parts):
                if part.message is not None and part.message.content:
                    yield part.message.content
                if part.done:
                    usage = Usage(part.prompt_eval_count or 0, part.eval_count or 0)
        except (ollama.ResponseError, httpx.HTTPError, ValueError) as exc:
            # Text already reached the reader, so this is not retried.
            raise BackendStreamBroken(f"Ollama stopped mid-reply ({_reason(exc)}); ask again.") from exc
        finally:
            parts.close()
        if usage is None:
            raise BackendStreamBroken("Ollama ended the reply before it was complete; ask again.")
        yield usage

    def _open(self, request: ChatRequest) -> tuple[Any, list[Any]]:
        """Send the request and read up to the first text, so that failures before it can be retried."""
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": m["role"], "content": m["content"]} for m in request.messages]
        # The client sends nothing until its generator is first advanced.
        parts = self.client.chat(
            model=self.model,
            messages=messages,
            stream=True,
            format="json" if request.json_mode else None,
            options={"temperature": request.temperature, "num_predict": request.max_tokens},
        )
        head = []
        try:
            for part in parts:
                head.append(part)
                if (part.message is not None and part.message.content) or part.done:
                    return parts, head
        except BaseException:
            parts.close()
            raise
        raise NoTextYet()

    def _translate(self, exc: Exception) -> BackendError:
        if isinstance(exc, NoTextYet):
            return BackendStreamBroken("Ollama closed the reply before sending any text; ask again.")
        if isinstance(exc, httpx.TimeoutException):
            return BackendTimeout(f"Ollama did not answer within {self.timeout:g} s; try again.")
        if isinstance(exc, (ConnectionError, httpx.TransportError)):
            return BackendUnavailable(
                f"Could not reach Ollama at {self.host}: is `ollama serve` running? (setting: OLLAMA_HOST)"
            )
        if isinstance(exc, ollama.ResponseError):
            status, detail = exc.status_code, str(exc.error)[:200]
            if status in (401, 403):
                return BackendAuthError(
                    f"Ollama at {self.host} refused the key ({status}): check OLLAMA_API_KEY and OLLAMA_HOST."
                )
            if status == 404 and "not found" in detail:
                return BackendError(f"Ollama has no model '{self.model}': run `ollama pull {self.model}`.")
            if status == 429:
                return BackendRateLimited("Ollama is limiting requests (429); wait a minute and try again.")
            if status >= 500 or status == -1:  # -1: an error reported inside the stream
                return BackendUnavailable(f"Ollama failed while answering: {detail}")
            return BackendError(f"Ollama rejected the request ({status}): {detail}")
        return BackendError(f"Ollama failed: {_reason(exc)}")


def _is_retryable(exc: Exception) -> bool:
    if isinstance(exc, (NoTextYet, ConnectionError, httpx.TransportError)):
        return True
    if isinstance(exc, ollama.ResponseError):
        return exc.status_code in (429, -1) or exc.status_code >= 500
    return False


def _retry_after(exc: Exception) -> float:
    """Seconds the server asked to wait; the client keeps no response, so only from its cause."""
    return retry_after_seconds(getattr(exc.__cause__ or exc.__context__, "response", None))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, (ConnectionError, httpx.TransportError)):
        return "connection lost"
    if isinstance(exc, ollama.ResponseError):
        return str(exc.error)[:120]
    return f"unexpected {type(exc).__name__}"
