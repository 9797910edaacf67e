"""Ollama backend: models served by a local or remote `ollama serve`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import httpx
import ollama

from backends.base import RemoteBackend, StreamEvent, retry_after_seconds
from common.errors import BackendAuthError, BackendError, BackendRateLimited, BackendUnavailable
from common.types import ChatRequest, Stop

if TYPE_CHECKING:
    from common.settings import Settings

DEFAULT_MODEL = "llama3.2"
DEFAULT_HOST = "http://127.0.0.1:11434"
# The status a ResponseError carries when the error was reported inside the stream.
IN_STREAM = -1
# done_reason as the product names it; others ("load", "unload") pass through as they are.
STOP_REASONS = {"stop": Stop.END, "length": Stop.LENGTH}


class OllamaBackend(RemoteBackend):
    """Streams replies from Ollama's /api/chat through the official `ollama` client."""

    name = "ollama"
    label = "Ollama"
    timeout_errors = (httpx.TimeoutException,)
    # The client raises the built-in ConnectionError when nothing listens at the host.
    connection_errors = (ConnectionError, httpx.TransportError)
    api_errors = (ollama.ResponseError,)
    dropped_errors = (httpx.RemoteProtocolError,)
    stream_errors = (ollama.ResponseError, httpx.HTTPError, ValueError)

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
    def from_settings(cls, settings: Settings, model: str | None = None, **options: Any) -> "OllamaBackend":
        """Build from settings: host (OLLAMA_HOST), timeout and retries; Ollama needs no key."""
        return cls(
            model=model or DEFAULT_MODEL,
            host=settings.ollama_host or None,
            timeout=settings.request_timeout,
            max_retries=settings.max_retries,
        )

    def _send(self, request: ChatRequest) -> tuple[Any, Iterator[Any]]:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": m["role"], "content": m["content"]} for m in request.messages]
        # The client sends nothing until its generator is first advanced; the generator is also what closes.
        parts = self.client.chat(
            model=self.model,
            messages=messages,
            stream=True,
            format="json" if request.json_mode else None,
            options=self._options(request),
        )
        return parts, parts

    @staticmethod
    def _options(request: ChatRequest) -> dict[str, Any]:
        """Ollama's generation options; its own default repeat penalty stands unless the template sets one."""
        options: dict[str, Any] = {"temperature": request.temperature, "num_predict": request.max_tokens}
        if request.repetition_penalty > 1.0:
            options["repeat_penalty"] = request.repetition_penalty
        return options

    def _read(self, part: Any) -> StreamEvent:
        text = (part.message.content if part.message is not None else None) or ""
        if not part.done:
            return StreamEvent(text)
        # The last part, marked done, carries the token counts and why generation stopped.
        reason = getattr(part, "done_reason", None) or ""
        return StreamEvent(text, part.prompt_eval_count or 0, part.eval_count or 0, finished=True,
                           stop_reason=STOP_REASONS.get(reason, reason))

    def _is_retryable(self, exc: Exception) -> bool:
        in_stream = isinstance(exc, ollama.ResponseError) and exc.status_code == IN_STREAM
        return in_stream or super()._is_retryable(exc)

    def _retry_after(self, exc: Exception) -> float:
        """Seconds the server asked to wait; the client keeps no response, so only from its cause."""
        return retry_after_seconds(getattr(exc.__cause__ or exc.__context__, "response", None))

    def _reason(self, exc: BaseException) -> str:
        if isinstance(exc, ollama.ResponseError):
            return str(exc.error)[:120]
        return super()._reason(exc)

    def _unreachable(self) -> str:
        return f"Could not reach Ollama at {self.host}: is `ollama serve` running? (setting: OLLAMA_HOST)"

    def _status_error(self, exc: Exception) -> BackendError | None:
        if not isinstance(exc, ollama.ResponseError):
            return None
        status, detail = exc.status_code, str(exc.error)[:200]
        if status in (401, 403):
            return BackendAuthError(
                f"Ollama at {self.host} refused the key ({status}): check OLLAMA_API_KEY and OLLAMA_HOST."
            )
        if status == 404 and "not found" in detail:
            return BackendError(f"Ollama has no model '{self.model}': run `ollama pull {self.model}`.")
        if status == 429:
            return BackendRateLimited("Ollama is limiting requests (429); wait a minute and try again.")
        if status == IN_STREAM:
            return BackendUnavailable(f"Ollama failed while answering: {detail}")
        if status >= 500:
            return BackendUnavailable(f"Ollama is having trouble ({status}); try again shortly. {detail}")
        return BackendError(f"Ollama rejected the request ({status}): {detail}")
