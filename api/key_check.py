"""The API key check of every `/v1` request, run on the event loop with redis.asyncio.

FastAPI sends a plain-function dependency to a worker thread and waits for it. Awaited on the loop,
the check costs its two Redis round trips and no thread: a slow Redis holds no worker thread, and
the middleware that checks keys before the body (api/key_first.py) awaits it directly. On the
2-core dev box the end-to-end latency was the same either way, within noise (BENCHMARKS.md,
"HTTP API"): each awaited round trip costs the loop a wake-up about as dear as the hop it saves.
"""

from __future__ import annotations

import asyncio
from typing import Callable

import redis
import redis.asyncio

from chatbot.access.api_keys import ApiKey, ApiKeys
from chatbot.access.throttle import AsyncMovingWindow, async_moving_window
from chatbot.store.server import async_twin


class KeyCheck:
    """`ApiKeys.verify` and `admit`, awaited: an asyncio client per event loop, following the store's client.

    The store may replace its client (an embedded Redis restarted after a crash); the asyncio client
    is rebuilt to follow it, and one is kept per event loop (a redis.asyncio client is bound to one).
    """

    def __init__(self, keys: ApiKeys, client: Callable[[], redis.Redis]):
        self._keys, self._client = keys, client
        self._bound: dict[asyncio.AbstractEventLoop, tuple[redis.Redis, redis.asyncio.Redis, AsyncMovingWindow]] = {}

    def _for_this_loop(self) -> tuple[redis.asyncio.Redis, AsyncMovingWindow]:
        loop, client = asyncio.get_running_loop(), self._client()
        bound = self._bound.get(loop)
        if bound is None or bound[0] is not client:
            self._bound = {known: b for known, b in self._bound.items() if not known.is_closed()}
            twin = async_twin(client)
            bound = self._bound[loop] = (client, twin, async_moving_window(twin))
        return bound[1], bound[2]

    async def verify(self, given: str) -> ApiKey | None:
        """The live key's record, or None (see ApiKeys.verify). Raises redis.RedisError when Redis is down."""
        client, _ = self._for_this_loop()
        return await self._keys.verify_async(given, client)

    async def admit(self, key: ApiKey) -> None:
        """Count the request against the key's rate; KeyLimitReached over it (see ApiKeys.admit)."""
        _, window = self._for_this_loop()
        await self._keys.admit_async(key, window)

    async def close(self) -> None:
        """Close this event loop's client (when the server shuts down)."""
        bound = self._bound.pop(asyncio.get_running_loop(), None)
        if bound is not None:
            await bound[1].aclose()
