"""Redis faults as the page sees them: one typed error (`StoreUnavailable`) with a one-sentence reason."""

from __future__ import annotations

from functools import wraps
from typing import Any, Callable, TypeVar

import redis

from common.errors import StoreUnavailable

F = TypeVar("F", bound=Callable[..., Any])


def describe_fault(exc: Exception) -> str:
    """What a Redis error means for the person at the page, in one sentence."""
    text = str(exc).split("caused error: ", 1)[-1]  # a pipeline's error names its command first
    if isinstance(exc, redis.TimeoutError):
        return "The conversation store did not answer in time."
    if isinstance(exc, redis.ConnectionError):
        return f"The conversation store cannot be reached ({exc.__class__.__name__})."
    if isinstance(exc, redis.ReadOnlyError) or text.startswith("READONLY"):
        return "The conversation store is a read-only replica and refused the write."
    if text.startswith("OOM") or "maxmemory" in text:
        return "The conversation store is out of memory and refused the write."
    code = text.split(" ", 1)[0] if text[:1].isupper() else exc.__class__.__name__
    return f"The conversation store refused the request ({code})."


def store_call(method: F) -> F:
    """Turn every Redis fault into StoreUnavailable, reviving a lost embedded server once first.

    A lost connection or a timeout, and every error the server answers (out of memory, read-only
    replica, a script it no longer has, a key of the wrong type...): the page shows one message
    and keeps the customer's text; it never shows a traceback.
    """

    @wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = self.client
        try:
            return method(self, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            error: Exception = exc
            if self._revive(client):
                try:
                    return method(self, *args, **kwargs)
                except redis.RedisError as again:
                    error = again
            raise StoreUnavailable(describe_fault(error)) from error
        except redis.RedisError as exc:
            raise StoreUnavailable(describe_fault(exc)) from exc

    return wrapper  # type: ignore[return-value]
