"""The Chroma client: embedded in the data directory, or a Chroma server by configuration.

Several processes may use one embedded store (the app, `python -m chatbot ingest`, a second app
process). Chroma's PersistentClient keeps the vector indexes in memory, per process: another
process's writes reach the store's SQLite tables but not those indexes, so a search misses the
new chunks, or fails with InternalError "Error finding id" when a filter names them; and two
processes writing at once lose vectors for good (measured on chromadb 1.5.9). So, per embedded
directory, every process holds one `Store`:

- writers take `knowledge-writer.lock` in the directory (an flock through `filelock`: one writer
  at a time across processes and threads; the kernel releases it when a process dies) and, when
  done, rewrite the marker file `knowledge-generation` with a fresh token;
- readers read that marker (a 32-byte file: 0.1 ms) before a search and, when it changed, reopen
  the client: closing the process's only client of the directory drops Chroma's engine, and a
  new one loads what is on disk (about 0.2 s on the demo base with two busy cores, once per
  write elsewhere), so the next search sees every commit; a search that still meets an internal
  error reopens once and retries (knowledge/store.py).

The alternative, refusing a second process outright, would stop the documented `ingest` beside
the app; a lock held per commit batch lets both go on, the second waiting seconds, not minutes.

A Chroma server (HttpClient) serves every process itself: no lock, no marker, nothing to reopen.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from common.errors import ConfigurationError, VectorStoreBusy

log = logging.getLogger(__name__)

MARKER = "knowledge-generation"
LOCK = "knowledge-writer.lock"
# How long a write waits for another process's before it gives up (VectorStoreBusy). A writer holds
# the lock for one commit batch: at most ingest.COMMIT_CHUNKS chunks embedded and written, about
# 25 s at the 43 chunks/s BENCHMARKS.md measured on two cores.
WRITE_WAIT = 300.0

_stores: dict[str, "Store"] = {}
_stores_lock = threading.Lock()


def _auth_refused(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(word in text for word in ("401", "403", "unauthorized", "forbidden", "autherror", "authentication"))


def _settings():
    import chromadb

    return chromadb.Settings(anonymized_telemetry=False)


def make_chroma_client(data_dir: Path | None = None, host: str = "", port: int = 8000, token: str = ""):
    """A Chroma server client when `host` is set (CHROMA_HOST), else this process's client of `data_dir`."""
    import chromadb

    if not host:
        if data_dir is None:
            raise ConfigurationError("The embedded vector store needs a data directory (CHATBOT_DATA_DIR)")
        return embedded_store(data_dir).client
    ssl = False
    if "://" in host:  # CHROMA_HOST=https://chroma.example.com[:port] is accepted too
        url = urlparse(host)
        ssl = url.scheme == "https"
        host, port = url.hostname or "", url.port or (443 if ssl else port)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        client = chromadb.HttpClient(host=host, port=int(port), ssl=ssl, headers=headers, settings=_settings())
        client.heartbeat()
        # The heartbeat is public on some deployments; listing needs the credentials.
        client.count_collections()
    except Exception as exc:  # noqa: BLE001 - chromadb raises ValueError, httpx and its own errors here
        if _auth_refused(exc):
            raise ConfigurationError(
                f"The Chroma server at {host}:{port} refused the credentials: check CHROMA_TOKEN"
            ) from exc
        raise ConfigurationError(
            f"Cannot reach the Chroma server at {host}:{port} ({exc}): check CHROMA_HOST and CHROMA_PORT,"
            " or unset CHROMA_HOST to use the embedded store"
        ) from exc
    return client


def embedded_store(data_dir: str | Path) -> "Store":
    """This process's Store of an embedded directory (one per directory: see the module's notes)."""
    directory = str(Path(data_dir).resolve())
    with _stores_lock:
        store = _stores.get(directory)
        if store is None or store.closed:
            store = _stores[directory] = Store(directory=directory)
        return store


def store_of(client) -> "Store":
    """The Store a knowledge base uses for `client`: the shared one of its directory, or the server's own."""
    settings = client.get_settings()
    if settings.is_persistent:
        store = embedded_store(settings.persist_directory)
        if store.client is not client:  # a client made around make_chroma_client: let it go
            client.close()
        return store
    return Store(client=client)


class Store:
    """A client that can be swapped for a fresh one, the collections that follow it, and the write lock."""

    def __init__(self, directory: str = "", client=None):
        self.directory = directory
        self.embedded = bool(directory)
        self.write_wait = WRITE_WAIT
        self._cond = threading.Condition()
        self._users = 0
        self._reopening = False
        self.opened_at = self.marker()  # read before opening: a later write shows as a change
        self.client = client if client is not None else self._open()
        if self.embedded:
            from filelock import FileLock

            self._lock = FileLock(os.path.join(directory, LOCK))
            self._held = threading.local()

    @property
    def closed(self) -> bool:
        """Closed by someone else (not for a moment by `reopen`): the directory needs a new Store."""
        return not self._reopening and bool(getattr(self.client, "_closed", False))

    def _open(self):
        import chromadb

        Path(self.directory).mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=self.directory, settings=_settings())

    def get_or_create_collection(self, name: str, **options) -> "Collection":
        return Collection(self, name, options)

    def collection_names(self) -> set[str]:
        """The names of every collection in the store."""
        with self.using():
            return {getattr(c, "name", c) for c in self.client.list_collections()}

    def delete_collection(self, name: str) -> None:
        with self.using():
            self.client.delete_collection(name)

    def get_max_batch_size(self) -> int:
        with self.using():
            return self.client.get_max_batch_size()

    # -- what other processes wrote ------------------------------------------------------

    def marker(self) -> str:
        """The token the last writer left ('' before any write, and always for a server)."""
        if not self.embedded:
            return ""
        try:
            with open(os.path.join(self.directory, MARKER)) as fh:
                return fh.read()
        except FileNotFoundError:
            return ""

    def catch_up(self, marker: str) -> bool:
        """Reopen if the client was opened before the write that left `marker`; True if it did."""
        if not self.embedded or marker == self.opened_at:
            return False
        self.reopen(marker)
        return True

    def reopen(self, marker: str | None = None) -> None:
        """Close the client and open a fresh one, once calls in flight are done (the embedded store only)."""
        if not self.embedded:
            return
        with self._cond:
            if self._reopening:  # another thread is at it: wait for its fresh client
                self._cond.wait_for(lambda: not self._reopening)
                return
            self._reopening = True
            self._cond.wait_for(lambda: self._users == 0)
        try:
            self.opened_at = self.marker() if marker is None else marker
            self.client.close()  # the process's only client of the directory: Chroma drops its engine
            self.client = self._open()
        finally:
            with self._cond:
                self._reopening = False
                self._cond.notify_all()

    @contextmanager
    def using(self):
        """Around one call on the client: a reopen waits for it, and it waits for a reopen."""
        with self._cond:
            self._cond.wait_for(lambda: not self._reopening)
            self._users += 1
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                self._cond.notify_all()

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def writing(self, wait: float | None = None):
        """Hold the store's write lock (waiting up to `wait` seconds, else `write_wait`), up to date; tell
        readers when done."""
        wait = self.write_wait if wait is None else wait
        if not self.embedded or getattr(self._held, "depth", 0):  # a server, or a write within a write
            yield
            return
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            if wait <= 0:
                raise self._busy() from None
            log.warning("Another process is writing to the knowledge base in %s: waiting up to %.0f s",
                        self.directory, wait)
            try:
                self._lock.acquire(timeout=wait)
            except Timeout:
                raise self._busy() from None
        self._held.depth = 1
        try:
            self.catch_up(self.marker())
            yield
        finally:
            self._held.depth = 0
            try:
                self._bump()
            finally:
                self._lock.release()

    def _busy(self) -> VectorStoreBusy:
        return VectorStoreBusy(
            f"Another process is writing to the knowledge base in {self.directory} (an ingestion from the"
            " command line or another app process); try again when it has finished"
        )

    def _bump(self) -> None:
        token = uuid.uuid4().hex
        tmp = os.path.join(self.directory, f"{MARKER}.{os.getpid()}.tmp")
        with open(tmp, "w") as fh:
            fh.write(token)
        os.replace(tmp, os.path.join(self.directory, MARKER))  # readers see the old token or the new one
        self.opened_at = token  # our client made these writes itself: nothing to reload


class Collection:
    """A collection of whichever client the Store has open; each call is one `Store.using`."""

    def __init__(self, store: Store, name: str, options: dict):
        self._store, self._name, self._options = store, name, options
        self._client = self._collection = None
        with store.using():
            self._current()  # created now, as get_or_create_collection would

    def _current(self):
        client = self._store.client
        if client is not self._client:
            self._collection = client.get_or_create_collection(self._name, **self._options)
            self._client = client
        return self._collection

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        with self._store.using():
            value = getattr(self._current(), name)
        if not callable(value):
            return value

        def call(*args, **kwargs):
            with self._store.using():
                return getattr(self._current(), name)(*args, **kwargs)

        return call
