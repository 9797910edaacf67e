"""The backend contract: one streaming method, plus retry and token helpers."""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from typing import Callable, Iterator, TypeVar

from common.errors import BackendError
from common.types import ChatRequest, Usage

T = TypeVar("T")
# A server may ask for a long wait; a person at a chat window should not be kept longer.
MAX_RETRY_AFTER = 10.0


class NoTextYet(Exception):
    """The stream closed before any text and without its end marker; worth another try."""


class Backend(ABC):
    """An LLM backend: `stream` yields text pieces and, last, at most one `Usage`."""

    name: str = "base"
    model: str = ""
    # Whether the backend can write a faithful summary of old turns.
    can_summarise: bool = True
    # Whether the backend can pick an intent when the router abstains (an LLM can; quoting cannot).
    can_classify: bool = True

    @abstractmethod
    def stream(self, request: ChatRequest) -> Iterator[str | Usage]:
        """Yield the reply as it is generated; raise a BackendError subclass on failure."""

    def complete(self, request: ChatRequest) -> str:
        """The whole reply as one string."""
        return "".join(piece for piece in self.stream(request) if isinstance(piece, str))

    def count_tokens(self, text: str) -> int:
        """Tokens in `text`: the backend's tokenizer where it has one, else an estimate."""
        return estimate_tokens(text)


class RemoteBackend(Backend):
    """A backend behind a network API: its request is retried until the first text piece arrives."""

    max_retries = 3
    retry_base_delay = 0.5
    # An attribute, so that tests can record the backoff instead of waiting it out.
    sleep = staticmethod(time.sleep)

    def _set_request_options(self, model: str, timeout: float, max_retries: int,
                             retry_base_delay: float | None) -> None:
        """The model, the request timeout and the retry settings every API backend takes."""
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        if retry_base_delay is not None:
            self.retry_base_delay = retry_base_delay

    def _open_with_retries(
        self,
        open_stream: Callable[[], T],
        *,
        is_retryable: Callable[[Exception], bool],
        retry_after: Callable[[Exception], float],
    ) -> T:
        """Run `open_stream` (send the request, read up to the first text) with backoff."""
        return with_retries(
            open_stream,
            retries=self.max_retries,
            is_retryable=is_retryable,
            translate=self._translate,
            base_delay=self.retry_base_delay,
            sleep=self.sleep,
            retry_after=retry_after,
        )

    @abstractmethod
    def _translate(self, exc: Exception) -> BackendError:
        """The typed error a failed request is shown as."""


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
