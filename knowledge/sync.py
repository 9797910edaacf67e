"""Keeping a knowledge base up with its stores: what other processes and replicas committed.

The registry's generation token says when the documents changed; the local keyword index
is then brought to exactly the registered versions. Startup also sweeps what crashed
ingestions and deletions left behind.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

import httpx

from common.errors import VectorStoreBusy, VectorStoreUnavailable
from knowledge.chunking import ChunkSettings
from knowledge.ingest import _chunk
from knowledge.registry import DocumentInfo, new_token
from knowledge.types import Chunk

# How often a search checks whether another process changed the registry.
SYNC_INTERVAL = 2.0
# A full registry read even when the generation token looks unchanged (two writers can race on it).
FULL_SYNC_INTERVAL = 30.0
_GET_PAGE = 2000

log = logging.getLogger(__name__)


@contextmanager
def reachable():
    """Turn a Chroma server that cannot be reached into the typed error pages and the CLI show."""
    try:
        yield
    except httpx.TransportError as exc:
        raise VectorStoreUnavailable(
            f"The Chroma server cannot be reached ({exc}); check that it runs, and CHROMA_HOST / CHROMA_PORT"
        ) from exc


class Following:
    """The part of KnowledgeBase that follows the registry (it provides the stores and the lock)."""

    # -- keeping up with the registry --------------------------------------------------

    def sync(self, force: bool = False) -> bool:
        """Follow changes made by other processes; True if the documents changed.

        A write by another process on the embedded store shows at once: its marker differs from
        the one this view was read at, so the client is reopened and the registry read afresh.
        """
        now = time.monotonic()
        marker = self._store.marker()
        moved = marker != self._seen
        if not (force or moved) and now - self._synced_at < self.sync_interval:
            return False
        # A search never waits for an ingestion in this process: its state is current anyway.
        if not self._lock.acquire(blocking=force):
            return False
        try:
            with reachable():
                self._store.catch_up(marker)
                changed = self._sync(now, force or moved)
                self._seen = marker
                return changed
        finally:
            self._lock.release()

    @contextmanager
    def _writing(self, wait: float | None = None):
        """This process's lock, then the store's (another process's write is waited for), up to date."""
        with self._lock, self._store.writing(wait):
            self.sync()
            yield

    def _sync(self, now: float, force: bool) -> bool:
        self._synced_at = now
        state = self._registry.state()
        generation = state.get("generation", "")
        if not self._fixed_chunking:
            self.chunking = _chunking_from(state) or self.chunking
        if generation == self._generation and not force and now - self._full_synced_at < FULL_SYNC_INTERVAL:
            return False
        if self._generation is not None and generation != self._generation and not force:
            self._store.reopen()  # committed by a process that died before it could leave its marker
        self._full_synced_at = now
        self.keywords.refresh()  # another process on this data directory may have written rows
        docs, titles = self._registry.documents()
        changed = {d: i.version for d, i in docs.items()} != {d: i.version for d, i in self._docs.items()}
        self._reconcile(docs, generation)
        self._docs, self._titles, self._generation = docs, titles, generation
        return changed

    def _reconcile(self, docs: dict[str, DocumentInfo], generation: str) -> None:
        """Make the local keyword index hold exactly the registered versions."""
        local = self.keywords.versions()
        stale = [d for d, v in local.items() if d not in docs or docs[d].version != v]
        missing = [d for d, info in docs.items() if local.get(d) != info.version]
        replace: dict[str, tuple[str, list[Chunk]]] = {d: (docs[d].version, []) for d in missing}
        for start in range(0, len(missing), 50):
            group = missing[start:start + 50]
            for text, meta in self._get_chunks({"doc_id": {"$in": group}} if len(group) > 1 else {"doc_id": group[0]}):
                version, chunks = replace[meta["doc_id"]]
                if meta.get("version", "") == version:
                    chunks.append(_chunk(text, meta))
        if stale or replace or generation != self.keywords.generation:
            self.keywords.apply(replace=replace, delete=stale, generation=generation)

    def _get_chunks(self, where: dict, include_vectors: bool = False):
        include = ["documents", "metadatas", *(["embeddings"] if include_vectors else [])]
        offset = 0
        while True:
            got = self._chunks.get(where=where, include=include, limit=_GET_PAGE, offset=offset)
            vectors = got["embeddings"] if include_vectors else [None] * len(got["ids"])
            for text, meta, vector in zip(got["documents"], got["metadatas"], vectors):
                yield (text, meta, vector) if include_vectors else (text, meta)
            if len(got["ids"]) < _GET_PAGE:
                return
            offset += _GET_PAGE

    def _sweep(self) -> None:
        """Remove what crashed ingestions (of this index's process) and deletions left behind."""
        if not (self.keywords.in_flight() or self._registry.removed()):
            return  # the usual start: nothing to take the write lock for
        try:
            # Under the write lock, an ingestion in flight (in another process on this index) has
            # finished: what its journal still lists was left by a crash. A start never waits.
            with self._writing(wait=0):
                self._sweep_left_over()
        except VectorStoreBusy:
            log.info("another process is writing to the knowledge base; leftovers are swept at a later start")

    def _sweep_left_over(self) -> None:
        left = self.keywords.in_flight()
        for doc_id, version, previous in left:
            current = self._docs.get(doc_id)
            # Committed: only the version it replaced is left over. Not committed: its own chunks.
            leftover = previous if current and current.version == version else version
            if leftover and not (current and current.version == leftover):
                self._delete_version(doc_id, leftover)
        self.keywords.finish([(doc_id, version) for doc_id, version, _ in left])
        # A tombstone's version is dead whoever wrote it, so its chunks can always go.
        for doc_id, version, _ in self._registry.removed():
            self._delete_version(doc_id, version)
            self._registry.forget([doc_id])

    def _adopt_unregistered(self) -> None:
        """Register chunks written before the registry existed, so they stay searchable."""
        found: dict[str, DocumentInfo] = {}
        for _, meta in self._get_chunks({"chunk": {"$gte": 0}}):
            info = found.get(meta["doc_id"])
            if info is None:
                info = found[meta["doc_id"]] = DocumentInfo(
                    meta["doc_id"], meta["source"], meta["title"], meta.get("category", ""), 0, 0, "", time.time(),
                    meta.get("version", ""),
                )
            info.chunks += 1
        infos = list(found.values())
        titles = self._vectors.embed([info.title for info in infos])
        with self._writing():
            self._registry.commit(new_token(), self._settings_state(),
                                  [(info, None, vector) for info, vector in zip(infos, titles)])

    def _settings_state(self) -> dict:
        return {"chunk_size": self.chunking.size, "chunk_overlap": self.chunking.overlap}

    def _delete_version(self, doc_id: str, version: str) -> None:
        if version:
            self._chunks.delete(where={"$and": [{"doc_id": doc_id}, {"version": version}]})
            return
        # Chunks written before versions existed carry no version field (ids "doc:index").
        ids = [cid for cid in self._chunks.get(where={"doc_id": doc_id}, include=[])["ids"] if cid.count(":") == 1]
        if ids:
            self._chunks.delete(ids=ids)


def _chunking_from(state: dict) -> ChunkSettings | None:
    if state.get("chunk_size"):
        return ChunkSettings(int(state["chunk_size"]), int(state.get("chunk_overlap", 0)))
    return None
