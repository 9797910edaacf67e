"""Running a writing POST at most once per `Idempotency-Key` (see api/idempotency.py)."""

from __future__ import annotations

from typing import Callable

from fastapi import Request
from fastapi.responses import JSONResponse

from api import errors
from api.desk import Desk
from api.idempotency import HEADER, Stored, fingerprint
from chatbot.access.api_keys import ApiKey

REPLAYED = "Idempotent-Replayed"
RETRY_LATER = (429, 503)  # as Stripe, which keeps no answer for a request that was not let run


class Claim:
    """This request's hold on its idempotency key (or none, without the header)."""

    def __init__(self, desk: Desk, request: Request, key: ApiKey, request_repr: str):
        # None without the header; an empty one is sent, and refused by the claim (not taken for none:
        # a client that meant a key would get a second turn on its retry).
        self.key: str | None = request.headers.get(HEADER)
        self._store = desk.idempotency
        self.scope = f"{key.key_id}:{request.method}:{request.url.path}"
        self.request = fingerprint(request.method, request.url.path, request_repr.encode())
        self.stored: Stored | None = (self._store.claim(self.scope, self.key, self.request)
                                      if self.key is not None else None)

    def finish(self, status: int, body: dict) -> None:
        if self.key is not None:
            self._store.finish(self.scope, self.key, self.request, status, body)

    def release(self) -> None:
        if self.key is not None:
            self._store.release(self.scope, self.key)

    def fail(self, exc: BaseException) -> None:
        """Keep a typed error as the answer to retries; an unexpected one, or one that says to retry
        later (429, 503), frees the key: the retry its Retry-After asks for must run, not replay it."""
        error = errors.describe(exc)
        if error.kind == "internal_error" or error.status in RETRY_LATER:
            self.release()
        else:
            self.finish(error.status, errors.body(error))


def run_once(desk: Desk, request: Request, key: ApiKey, request_repr: str,
             produce: Callable[[], dict], status: int = 200) -> JSONResponse:
    """`produce()`'s JSON answer, or the first answer to this request's `Idempotency-Key`.

    `request_repr` identifies the request's content (its JSON, say): the same key with other
    content is refused with 422.
    """
    claim = Claim(desk, request, key, request_repr)
    if claim.stored is not None:
        return JSONResponse(claim.stored.body, claim.stored.status, headers={REPLAYED: "true"})
    try:
        body = produce()
    except BaseException as exc:
        claim.fail(exc)
        raise
    claim.finish(status, body)
    return JSONResponse(body, status)
