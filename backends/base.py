"""The backend contract: one streaming method, capability flags, and the one stream loop of API backends."""

from __future__ import annotations

import itertools
import random
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

from common.errors import BackendError, BackendStreamBroken, BackendTimeout, BackendUnreachable
from common.types import ChatRequest, Stop, Usage

if TYPE_CHECKING:
    from common.settings import Settings

T = TypeVar("T")
Errors = tuple[type[BaseException], ...]
# A server may ask for a long wait; a person at a chat window should not be kept longer.
MAX_RETRY_AFTER = 10.0


class NoTextYet(Exception):
    """The stream closed before any text and without its end marker; worth another try."""


@dataclass(frozen=True)
class StreamEvent:
    """One provider event, read: text, token counts (None where it reports none), whether it ends the reply.

    `stop_reason` is why the model stopped, where the event says (a `Stop` value or the provider's
    own word); a refusal's text comes as `text` with `stop_reason` Stop.REFUSAL.
    """

    text: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    finished: bool = False
    stop_reason: str = ""


class Backend(ABC):
    """An LLM backend: `stream` yields text pieces and, last, at most one `Usage` (with the stop reason)."""

    name: str = "base"
    model: str = ""
    # Capabilities: the bot and the pages ask these, never the backend's name.
    # Whether it can follow the router's intent-classification prompt (a language model can).
    can_classify: bool = True
    # Whether it can write a faithful summary of old turns.
    can_summarise: bool = True
    # Whether it refuses to start without an API key.
    needs_key: bool = False
    # Whether it runs in this process, with no server to reach.
    is_local: bool = False
    # How a model is picked: "name" (the server's model name), "folder" (weights on disk), "" (no choice).
    model_choice: str = "name"

    @classmethod
    def from_settings(cls, settings: Settings, model: str | None = None, **options: Any) -> Backend:
        """A ready backend from settings; ConfigurationError names a missing setting."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from settings")

    @abstractmethod
    def stream(self, request: ChatRequest) -> Iterator[str | Usage]:
        """Yield the reply as it is generated; raise a BackendError subclass on failure."""

    def complete(self, request: ChatRequest) -> str:
        """The whole reply as one string."""
        return "".join(piece for piece in self.stream(request) if isinstance(piece, str))

    def count_tokens(self, text: str) -> int:
        """Tokens in `text`: the backend's tokenizer where it has one, else an estimate."""
        return estimate_tokens(text)

    def prompt_tokens(self, request: ChatRequest) -> int:
        """The request's input tokens, counted locally (`count_tokens`): system prompt and every message."""
        return self.count_tokens("\n".join([request.system, *(m["content"] for m in request.messages)]))


class RemoteBackend(Backend):
    """A backend behind a network API: its request is retried until the first text piece arrives."""

    # A provider supplies `_send`, `_read`, `_unreachable` and `_status_error`, and names its
    # client's exceptions in the `*_errors` tuples, so that the stream loop below is written once.
    max_retries = 3
    retry_base_delay = 0.5
    timeout = 60.0
    # How messages name the provider ("OpenAI", "Ollama").
    label = "The model server"
    # An attribute, so that tests can record the backoff instead of waiting it out.
    sleep = staticmethod(time.sleep)
    # The client's exceptions by kind; timeouts are checked first, as they often subclass connection errors.
    timeout_errors: Errors = ()
    connection_errors: Errors = ()
    # Errors the server reported (any status, or an error event inside the stream).
    api_errors: Errors = ()
    # The server answered, then dropped the connection: found on the error or its cause, these are
    # shown as a reply cut off, not as a server that cannot be reached.
    dropped_errors: Errors = ()
    # What reading the stream can raise once text has reached the reader.
    stream_errors: Errors = (ValueError,)

    def _set_request_options(self, model: str, timeout: float, max_retries: int,
                             retry_base_delay: float | None) -> None:
        """The model, the request timeout and the retry settings every API backend takes."""
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        if retry_base_delay is not None:
            self.retry_base_delay = retry_base_delay

    # -- what a provider supplies

    @abstractmethod
    def _send(self, request: ChatRequest) -> tuple[Any, Iterator[Any]]:
        """Send the request: the response to close, and an iterator over its raw events."""

    @abstractmethod
    def _read(self, event: Any) -> StreamEvent:
        """One raw event as text, token counts and the end marker."""

    @abstractmethod
    def _unreachable(self) -> str:
        """The message for a server that cannot be reached, naming the setting to check."""

    @abstractmethod
    def _status_error(self, exc: Exception) -> BackendError | None:
        """The typed error for an error the server reported; None for any other exception."""

    def _close(self, response: Any) -> None:
        response.close()

    def _status(self, exc: Exception) -> int | None:
        """The HTTP status a failed request answered with; None when it got no answer."""
        status = getattr(exc, "status_code", None)
        return status if isinstance(status, int) and status >= 100 else None

    def _is_retryable(self, exc: Exception) -> bool:
        """Whether another try may succeed: no answer, an empty stream, a 429 or a 5xx."""
        if isinstance(exc, (NoTextYet, *self.timeout_errors, *self.connection_errors)):
            return True
        status = self._status(exc)
        return status is not None and (status == 429 or status >= 500)

    def _retry_after(self, exc: Exception) -> float:
        """Seconds the server asked to wait, from the failed response's headers; 0 when it did not ask."""
        return retry_after_seconds(getattr(exc, "response", None))

    def _reason(self, exc: BaseException) -> str:
        """A few words on why a request failed, for messages."""
        if isinstance(exc, self.timeout_errors):
            return "timed out"
        if isinstance(exc, self.connection_errors):
            return "connection lost"
        if isinstance(exc, self.api_errors):
            return "the server reported an error"
        return f"unexpected {type(exc).__name__}"

    # -- the shared machinery

    def stream(self, request: ChatRequest) -> Iterator[str | Usage]:
        """Yield the reply's text as it arrives, then the usage and the stop reason the server reported."""
        response, events, head = with_retries(
            lambda: self._open(request),
            retries=self.max_retries,
            is_retryable=self._is_retryable,
            translate=self._translate,
            base_delay=self.retry_base_delay,
            sleep=self.sleep,
            retry_after=self._retry_after,
        )
        finished, input_tokens, output_tokens, stop_reason = False, None, None, ""
        try:
            for event in itertools.chain(head, map(self._read, events)):
                if event.input_tokens is not None:
                    input_tokens = event.input_tokens
                if event.output_tokens is not None:
                    output_tokens = event.output_tokens
                # A refusal stays one, whatever the closing event says (OpenAI ends a refusal with "stop").
                if event.stop_reason and stop_reason != Stop.REFUSAL:
                    stop_reason = event.stop_reason
                if event.text:
                    yield event.text
                finished = finished or event.finished
        except self.stream_errors as exc:
            # Text already reached the reader, so this is not retried.
            broken = BackendStreamBroken(f"{self.label} stopped mid-reply ({self._reason(exc)}); ask again.")
            raise self._with_fields(broken, exc) from exc
        finally:
            self._close(response)
        if not finished:
            raise BackendStreamBroken(f"{self.label} ended the reply before it was complete; ask again.",
                                      provider=self.name)
        yield Usage(input_tokens or 0, output_tokens or 0, stop_reason)

    def _open(self, request: ChatRequest) -> tuple[Any, Iterator[Any], list[StreamEvent]]:
        """Send the request and read up to the first text, so that failures before it can be retried."""
        response, events = self._send(request)
        head: list[StreamEvent] = []
        try:
            for raw in events:
                head.append(self._read(raw))
                if head[-1].text:
                    return response, events, head
        except BaseException:
            self._close(response)
            raise
        if not any(event.finished for event in head):
            self._close(response)
            raise NoTextYet()
        return response, events, head

    def _translate(self, exc: Exception) -> BackendError:
        """The typed error a failed request is shown as, with the provider, status and any wait asked for."""
        who = self.label
        if isinstance(exc, NoTextYet) or self._dropped(exc):
            error = BackendStreamBroken(f"{who} closed the reply before sending any text; ask again.")
        elif isinstance(exc, self.timeout_errors):
            error = BackendTimeout(f"{who} did not answer within {self.timeout:g} s; try again.")
        elif isinstance(exc, self.connection_errors):
            error = BackendUnreachable(self._unreachable())
        else:
            error = self._status_error(exc) or BackendError(f"{who} failed: {self._reason(exc)}")
        return self._with_fields(error, exc)

    def _dropped(self, exc: BaseException | None) -> bool:
        """Whether the connection broke after the server had started answering."""
        for _ in range(3):  # the error, its cause, the cause's cause: SDKs wrap their transport's errors
            if exc is None:
                return False
            if isinstance(exc, self.dropped_errors):
                return True
            exc = exc.__cause__ or exc.__context__
        return False

    def _with_fields(self, error: BackendError, exc: Exception) -> BackendError:
        error.provider = error.provider or self.name
        if error.status is None:
            error.status = self._status(exc)
        if error.retry_after is None:
            error.retry_after = self._retry_after(exc) or None
        return error


def estimate_tokens(text: str) -> int:
    """About four characters a token for English, never zero for non-empty text."""
    return (len(text) + 3) // 4


def with_retries(
    call: Callable[[], T],
    *,
    retries: int,
    is_retryable: Callable[[Exception], bool],
    translate: Callable[[Exception], BackendError],
    base_delay: float = 0.5,
    max_delay: float = 8.0,
    sleep: Callable[[float], None] = time.sleep,
    retry_after: Callable[[Exception], float] = lambda exc: 0.0,
) -> T:
    """Run `call`, retrying retryable failures with exponential backoff and jitter.

    A wait the server asked for (`retry_after`, e.g. from a Retry-After header) is honoured,
    up to MAX_RETRY_AFTER.
    """
    attempt = 0
    while True:
        try:
            return call()
        except BackendError:
            raise
        except Exception as exc:  # translated below: only SDK errors reach here
            if attempt >= retries or not is_retryable(exc):
                raise translate(exc) from exc
            delay = min(max_delay, base_delay * 2**attempt) * (0.5 + random.random() / 2)
            sleep(min(MAX_RETRY_AFTER, max(delay, retry_after(exc))))
            attempt += 1


def retry_after_seconds(response: object | None) -> float:
    """Seconds a response's retry-after-ms or retry-after header asks to wait, else 0."""
    headers = getattr(response, "headers", None)
    if headers is None:
        return 0.0
    for header, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            return max(0.0, float(headers.get(header, "")) * scale)
        except ValueError:
            continue
    return 0.0
