"""`Idempotency-Key` on the POSTs that write: a retried request gets the first answer, never a second turn.

The first request with a key claims it (Redis `SET NX`), runs, and stores its status and body under
the key for `ttl` seconds (a day by default, as Stripe keeps them). A retry after that gets the
stored answer. Following the IETF draft "The Idempotency-Key HTTP Header Field"
(draft-ietf-httpapi-idempotency-key-header, its error scenarios), as Stripe does:
- a duplicate sent while the first still runs is answered at once with 409 `idempotency_key_in_use`
  and `Retry-After` (nothing waits for the first, no worker thread is held); its retry after the
  first finished gets the first answer;
- the same key with a different request (another body or path) is refused with 422.
A request that fails unexpectedly (500) releases its key, so a retry runs again.

Keys: chatbot:idem:HASH  JSON {"state": "running"|"done", "request": fingerprint, "status", "body"}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Callable

import redis

from api.errors import ApiError

PREFIX = "chatbot:idem"
HEADER = "Idempotency-Key"
# Seconds a duplicate is asked to wait before its retry: most turns end within a second or two, and
# the OpenAI SDK retries a 409 after the Retry-After it is given.
RETRY_AFTER = 1
MAX_KEY_CHARS = 255


@dataclass(frozen=True)
class Stored:
    """The first request's answer."""

    status: int
    body: dict


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


class Idempotency:
    """Claims and stored answers, in the conversations' Redis."""

    def __init__(self, client: Callable[[], redis.Redis], *, ttl: int = 86400, running_ttl: int = 900):
        self._client = client
        self.ttl = ttl
        # A claim whose process died is given up after this long, so the key can be used again.
        self.running_ttl = running_ttl

    @staticmethod
    def _name(scope: str, key: str) -> str:
        return f"{PREFIX}:{hashlib.sha256(f'{scope}|{key}'.encode()).hexdigest()}"

    def claim(self, scope: str, key: str, request: str) -> Stored | None:
        """None when this request runs (it holds the key now); the first answer when one was given.

        Never waits. Raises ApiError 422 when the key was used for a different request, 409
        `idempotency_key_in_use` (with `Retry-After`) while the first request with it still runs.
        """
        if not key.strip():
            raise ApiError(422, "invalid_idempotency_key", f"{HEADER} is empty: send 1 to {MAX_KEY_CHARS} characters "
                                                           "(a UUID, say), or leave the header out.")
        if len(key) > MAX_KEY_CHARS:
            raise ApiError(422, "invalid_idempotency_key", f"{HEADER} has {len(key):,} characters; it must be 1 to "
                                                           f"{MAX_KEY_CHARS}.")
        name = self._name(scope, key)
        while True:  # loops only when the first released the key between our SET and GET
            mine = json.dumps({"state": "running", "request": request})
            if self._client().set(name, mine, nx=True, ex=self.running_ttl):
                return None
            raw = self._client().get(name)
            if raw is None:
                continue  # released between our SET and GET: try to claim it again
            record = json.loads(raw)
            if record.get("request") != request:
                raise ApiError(422, "idempotency_key_reused",
                               f"This {HEADER} was already used for a different request; use a new key.")
            if record.get("state") == "done":
                return Stored(int(record["status"]), record["body"])
            raise ApiError(409, "idempotency_key_in_use",
                           f"The first request with this {HEADER} is still running; retry in {RETRY_AFTER} s "
                           "to get its answer.", headers={"Retry-After": str(RETRY_AFTER)},
                           retry_after=RETRY_AFTER)

    def finish(self, scope: str, key: str, request: str, status: int, body: dict) -> None:
        record = {"state": "done", "request": request, "status": status, "body": body}
        self._client().set(self._name(scope, key), json.dumps(record, ensure_ascii=False), ex=self.ttl)

    def release(self, scope: str, key: str) -> None:
        self._client().delete(self._name(scope, key))
