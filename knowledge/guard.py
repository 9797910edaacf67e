"""The part of KnowledgeBase that holds back documents that would poison it (rules: knowledge/junk.py)."""

from __future__ import annotations

import logging

import numpy as np

from common.errors import VectorStoreUnavailable

from knowledge.junk import (DEFAULT_MAX_FILE_SHARE, NEAR_DUPLICATE_COSINE, copy_reason, near_empty, sample,
                            share_reason, text_key)
from knowledge.sync import reachable

log = logging.getLogger(__name__)


class Guarding:
    """Checks a planned document before it is embedded (it provides the stores and the registry view)."""

    max_file_share: float = DEFAULT_MAX_FILE_SHARE

    def _hold_reason(self, job, encoder, seen: dict[str, tuple[str, str]], adding: int) -> str:
        """Why `job`'s document is held ('' to ingest it). `seen`: text keys of chunks accepted earlier in
        this batch -> (doc_id, source); `adding`: chunks accepted earlier in this batch."""
        reason = near_empty(job.doc, job.chunks)
        if reason:
            return reason
        replaced = job.previous.chunks if job.previous else 0
        reason = share_reason(len(job.chunks) - replaced, sum(d.chunks for d in self._docs.values()) + adding
                              - replaced, self.max_file_share)
        return reason or self._copies(job, encoder, seen)

    def _neighbours(self, vectors: np.ndarray, doc_id: str) -> dict:
        """The 3 stored chunks of other documents nearest each vector. The check is advice, not a write:
        an embedded client behind another process's writes ("Error finding id") is reopened once, and
        a store that still cannot answer leaves the check out rather than fail the ingestion."""
        from chromadb.errors import ChromaError

        empty = {"ids": [[] for _ in vectors], "distances": [[] for _ in vectors],
                 "documents": [[] for _ in vectors], "metadatas": [[] for _ in vectors]}
        for attempt in range(2):
            try:
                with reachable():
                    return self._chunks.query(query_embeddings=vectors, n_results=3, where={"doc_id": {"$ne": doc_id}},
                                              include=["distances", "documents", "metadatas"])
            except (ChromaError, VectorStoreUnavailable) as exc:
                if attempt or not self._store.embedded:
                    log.warning("copy check left out, the vector store did not answer: %s", exc)
                    return empty
                self._store.reopen()
        return empty

    def _copies(self, job, encoder, seen: dict[str, tuple[str, str]]) -> str:
        """Whether most of a sample of the document's chunks repeat other documents' chunks."""
        picked = sample(job.chunks)
        keys = [text_key(job.chunks[i].text) for i in picked]
        copied: dict[int, str] = {i: seen[k][1] for i, k in zip(picked, keys)
                                  if k in seen and seen[k][0] != job.doc_id}
        others = [info for doc_id, info in self._docs.items() if doc_id != job.doc_id]
        if others and len(copied) < len(picked):
            need = [i for i in picked if i in job.todo]
            if need:  # embedded now, and kept: the ingestion does not embed them again
                job.vectors[need] = encoder.embed([job.chunks[i].embedding_text() for i in need])
                job.todo.difference_update(need)
            live = {info.doc_id: info for info in others}
            got = self._neighbours(np.asarray(job.vectors[picked]), job.doc_id)
            for i, key, ids, distances, texts, metas in zip(picked, keys, got["ids"], got["distances"],
                                                          got["documents"], got["metadatas"]):
                for distance, text, meta in zip(distances, texts, metas):
                    info = live.get(meta.get("doc_id", ""))
                    if info is None or info.version != meta.get("version", ""):
                        continue  # not a visible chunk
                    if 1.0 - float(distance) >= NEAR_DUPLICATE_COSINE or text_key(text) == key:
                        copied.setdefault(i, info.source)
                        break
        names = sorted(set(copied.values()))
        of = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        return copy_reason(len(copied), len(picked), of)
