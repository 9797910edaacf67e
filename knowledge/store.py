"""The knowledge base: Chroma for vectors, BM25 for keywords, fused at query time.

Writes follow one rule: a document's chunks are stored under a fresh version, and the
registry (knowledge/registry.py) switches the document to that version in one upsert.
Search shows only registered versions, so a failed, cancelled or crashed ingestion
never leaves half a document visible; what it wrote is removed then or at the next start.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np

from common.errors import EmbeddingModelChanged, VectorStoreUnavailable
from common.types import Passage
from knowledge.chunking import ChunkSettings
from knowledge.client import make_chroma_client, store_of
from knowledge.embedcache import EmbeddingCache
from knowledge.embeddings import Embedder
from knowledge.sync import SYNC_INTERVAL, Following, _chunking_from, reachable
from knowledge.fusion import FUSIONS, document_evidence, fuse
from knowledge.ingest import IngestResult, Ingestion
from knowledge.junk import DEFAULT_MAX_FILE_SHARE
from knowledge.keyword import KeywordIndex
from knowledge.guard import Guarding
from knowledge.reembed import Reembedding
from knowledge.registry import DocumentInfo, Registry, new_token

__all__ = ["KnowledgeBase", "IngestResult", "DocumentInfo", "make_chroma_client", "dump_passages", "MODES"]

log = logging.getLogger(__name__)

COLLECTION = "support-knowledge"
MODES = ("hybrid", "vector", "keyword")
# Per DESIGN.md, on a real help centre plain RRF lost recall and the convex combination gained;
# on the shipped query set the two are within a query or two of each other.
DEFAULT_FUSION = "convex"
# Candidates each retriever contributes before fusion, whatever k is, so that a caller
# asking for more passages gets the same ranking's longer tail.
CANDIDATES = 40


class KnowledgeBase(Following, Ingestion, Reembedding, Guarding):
    """Ingest, list, delete, re-index and search support documents."""

    def __init__(
        self,
        client,
        embedder: Embedder,
        index_dir: Path,
        chunking: ChunkSettings | None = None,
        collection: str = COLLECTION,
        fusion: str = DEFAULT_FUSION,
        sync_interval: float = SYNC_INTERVAL,
        embedding_cache: str | Path | bool = False,
        document_evidence: bool = True,
        max_file_share: float = DEFAULT_MAX_FILE_SHARE,
    ):
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; use one of {', '.join(FUSIONS)}")
        self.embedder = embedder
        self.max_file_share = max_file_share  # a document adding more of the base than this is held
        self.fusion = fusion
        self.document_evidence = document_evidence
        self.sync_interval = sync_interval
        self.degraded = ""  # why the last search fell back to keywords only, if it did
        self._fixed_chunking = chunking is not None
        # embedding_function=None: vectors always come from our embedder, and Chroma
        # never tries to download its default model.
        # One Store per embedded directory in a process: it reopens the client when another process
        # wrote, and serialises writers across processes (see knowledge/client.py).
        self._store = store_of(client)
        self._collection = collection
        self._open_collections()
        self._check_model()
        self._max_batch = self._store.get_max_batch_size()
        index_dir = Path(index_dir)
        index_dir.mkdir(parents=True, exist_ok=True)
        self.keywords = KeywordIndex(index_dir / f"keywords-{collection}.sqlite")
        # Optionally, chunks go through a persistent vector cache (True: in index_dir), for
        # stores rebuilt often (evaluations). Off by default: a changed or re-indexed document
        # already reuses the vectors of its unchanged chunks from the store itself.
        if embedding_cache:
            cache_path = index_dir / "embedding-cache.sqlite" if embedding_cache is True else Path(embedding_cache)
            self._vectors = EmbeddingCache(embedder, cache_path)
        else:
            self._vectors = embedder
        self._lock = threading.RLock()
        self._docs: dict[str, DocumentInfo] = {}
        self._titles: dict[str, np.ndarray] = {}
        self._generation = None
        self._seen: str | None = None  # the store's marker when this view was last read in full
        self._synced_at = self._full_synced_at = float("-inf")
        state = self._registry.state()
        self.chunking = chunking or _chunking_from(state) or ChunkSettings()
        if not state and self._chunks.count():
            self._adopt_unregistered()
        self.sync(force=True)
        self._sweep()

    def _open_collections(self) -> None:
        self._chunks = self._store.get_or_create_collection(
            self._collection, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
        )
        self._registry = Registry(self._store, f"{self._collection}-documents", self.embedder.dimension)

    def delete(self, doc_id: str) -> bool:
        """Remove a document and its chunks; False if there was none."""
        with self._writing():
            self.sync(force=True)
            info = self._docs.get(doc_id)
            if info is None:
                return False
            generation = new_token()
            current = self._registry.state().get("generation", "") == self._generation
            self._registry.commit(generation, self._settings_state(), removed=[(doc_id, info.version)])
            docs, vectors = dict(self._docs), dict(self._titles)
            docs.pop(doc_id)
            vectors.pop(doc_id, None)
            self._docs, self._titles = docs, vectors
            followed = generation if current else self._generation or ""
            self.keywords.apply(delete=[doc_id], generation=followed)
            self._generation = followed
            self._delete_version(doc_id, info.version)
            self._registry.forget([doc_id])
        return True

    # -- listing ---------------------------------------------------------------------

    def documents(self) -> list[DocumentInfo]:
        """Every document, by title."""
        self.sync()
        return sorted(self._docs.values(), key=lambda d: (d.title.lower(), d.source))

    def document(self, doc_id: str) -> DocumentInfo | None:
        self.sync()
        return self._docs.get(doc_id)

    def categories(self) -> list[str]:
        return sorted({d.category for d in self.documents() if d.category})

    def chunk_count(self) -> int:
        """Chunks of every visible document."""
        self.sync()
        return sum(d.chunks for d in self._docs.values())

    def stats(self) -> dict[str, int]:
        """Counts for a health check: visible chunks against what each index holds."""
        return {"documents": len(self.documents()), "chunks": self.chunk_count(),
                "vectors_stored": self._chunks.count(), "keyword_rows": self.keywords.count()}

    def chunks_of(self, doc_id: str) -> list[Passage]:
        """A document's chunks in reading order."""
        info = self.document(doc_id)
        if info is None:
            return []
        where = {"$and": [{"doc_id": doc_id}, {"version": info.version}]}
        passages = [_passage(text, meta, 1.0, []) for text, meta in self._get_chunks(where)]
        return sorted(passages, key=lambda p: p.chunk)

    # -- search ----------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 4,
        query_vector: np.ndarray | None = None,
        where: dict[str, str] | None = None,
        mode: str = "hybrid",
        fusion: str | None = None,
    ) -> list[Passage]:
        """Top-k passages for a query; pass `query_vector` to reuse an embedding, `where` to filter."""
        if mode not in MODES:
            raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        if not query.strip() or k <= 0:
            return []
        mode = self._usable_mode(mode)
        live = self._docs
        if not live:
            return []
        depth = max(CANDIDATES, k)
        vector_scores: dict[str, float] = {}
        keyword_scores: dict[str, float] = {}
        vector = None
        if mode != "keyword":
            vector = np.asarray(self.embedder.embed_one(query) if query_vector is None else query_vector,
                                dtype=np.float32)
            # Ids and distances only: the passages' fields come from the local rows, and
            # fetching them from Chroma cost more than the nearest-neighbour search itself.
            try:
                got = self._nearest(vector, depth, _chroma_where(where))
            except VectorStoreUnavailable as exc:
                mode = self._fall_back(mode, exc)
                got = {"ids": [[]], "distances": [[]]}
            for cid, distance in zip(got["ids"][0], got["distances"][0]):
                if _visible(live, *_parse_id(cid)[:2]):
                    vector_scores[cid] = 1.0 - float(distance)
        if mode != "vector":
            for cid, score in self.keywords.search(query, depth, where):
                if _visible(live, *_parse_id(cid)[:2]):
                    keyword_scores[cid] = score
        if mode == "hybrid":
            scores = self._fused(vector_scores, keyword_scores, vector, fusion or self.fusion)
        else:
            scores = vector_scores or keyword_scores
        ranked = sorted(scores, key=lambda cid: (-scores[cid], cid))[:k]
        return self._scored_passages(ranked, scores, vector_scores, keyword_scores)

    def _scored_passages(self, ranked: list[str], scores: dict[str, float], vector_scores: dict[str, float],
                         keyword_scores: dict[str, float]) -> list[Passage]:
        """The passages of the ranked chunk ids, each with its score and the retrievers that found it."""
        found = self._passages(ranked)
        passages = []
        for cid in ranked:
            p = found.get(cid)
            if p is None:  # registered, yet in neither store: nothing to show
                continue
            p.score = scores[cid]
            p.retrievers = [name for name, hits in (("vector", vector_scores), ("keyword", keyword_scores))
                            if cid in hits]
            p.similarity = vector_scores.get(cid)
            passages.append(p)
        return passages

    def _usable_mode(self, mode: str) -> str:
        """`mode`, or "keyword" while vector search cannot answer (the store unreachable, vectors of
        another embedding model), with the reason in `degraded`; a "vector" search raises instead."""
        try:
            self.sync()
            self.degraded = ""
        except VectorStoreUnavailable as exc:
            mode = self._fall_back(mode, exc)
        if self.model_change is not None and mode != "keyword":
            mode = self._fall_back(mode, EmbeddingModelChanged(self.model_change.message))
        return mode

    def _fused(self, vector_scores: dict[str, float], keyword_scores: dict[str, float], vector: np.ndarray,
               fusion: str) -> dict[str, float]:
        """Hybrid scores: the two retrievers fused, then each passage re-scored with its document's evidence."""
        scores = fuse(vector_scores, keyword_scores, fusion)
        if self.document_evidence and scores:
            doc_of = {cid: _parse_id(cid)[0] for cid in scores}
            titles = self._titles
            similarity = {d: float(titles[d] @ vector) for d in set(doc_of.values())
                          if d in titles and titles[d].shape == vector.shape}
            scores = document_evidence(scores, doc_of, similarity)
        return scores

    def _nearest(self, vector: np.ndarray, depth: int, where: dict | None) -> dict:
        """Chunk ids and distances nearest to `vector`; on an internal error, once more on a reopened client."""
        from chromadb.errors import InternalError, InvalidArgumentError

        retry = self._store.embedded
        while True:
            try:
                with reachable():
                    return self._chunks.query(query_embeddings=[vector], n_results=depth, where=where,
                                              include=["distances"])
            except InvalidArgumentError as exc:
                # Vectors of another size: another process re-embedded the store with another model.
                raise EmbeddingModelChanged(
                    f"The vector store holds vectors this model cannot search ({exc}); answering from the "
                    "keyword index until the knowledge base is rebuilt with this model"
                ) from exc
            except InternalError as exc:
                # An embedded client's indexes behind another process's writes ("Error finding id"):
                # a fresh client loads them from disk.
                if not retry:
                    raise VectorStoreUnavailable(
                        f"The vector store could not answer a search ({exc})"
                        + (", even on a freshly opened client" if self._store.embedded else "")
                        + "; answering from the keyword index until it does"
                    ) from exc
                log.warning("vector search failed (%s); reopening the store and trying again", exc)
                self._store.reopen()
                retry = False

    def _fall_back(self, mode: str, exc: VectorStoreUnavailable) -> str:
        """With the server down, hybrid search answers from the local keyword index alone."""
        if mode == "vector":
            raise exc
        if not self.degraded:
            log.warning("vector search unavailable, answering from keywords only: %s", exc)
        self.degraded = str(exc)
        return "keyword"

    def _passages(self, chunk_ids: list[str]) -> dict[str, Passage]:
        """Passages for chunk ids, from the local rows, else (another process's fresh write) from Chroma."""
        found = {
            cid: Passage(text=row.text, source=row.source, title=row.title, chunk=row.index, score=0.0,
                         heading=row.heading, doc_id=row.doc_id, category=row.category)
            for cid, row in self.keywords.rows(chunk_ids).items()
        }
        missing = [cid for cid in chunk_ids if cid not in found]
        if missing and not self.degraded:
            with reachable():
                got = self._chunks.get(ids=missing, include=["documents", "metadatas"])
            for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"]):
                found[cid] = _passage(text, meta, 0.0, [])
        return found

    def close(self) -> None:
        self.keywords.close()
        if isinstance(self._vectors, EmbeddingCache):
            self._vectors.close()


def _parse_id(chunk_id: str) -> tuple[str, str, int]:
    """(doc_id, version, index) from "doc:version:index" (or a version-less "doc:index")."""
    parts = chunk_id.split(":")
    if len(parts) == 2:
        return parts[0], "", int(parts[1])
    return parts[0], parts[1], int(parts[2])


def _visible(live: dict[str, DocumentInfo], doc_id: str, version: str) -> bool:
    info = live.get(doc_id)
    return info is not None and info.version == version


def _passage(text: str, meta: dict, score: float, retrievers: list[str]) -> Passage:
    return Passage(
        text=text, source=meta["source"], title=meta["title"], chunk=int(meta["chunk"]), score=score,
        heading=meta.get("heading", ""), doc_id=meta["doc_id"], category=meta.get("category", ""),
        retrievers=retrievers,
    )


def _chroma_where(where: dict[str, str] | None) -> dict | None:
    clauses = [{key: value} for key, value in (where or {}).items() if value]
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def dump_passages(passages: list[Passage]) -> str:
    """JSON for a list of passages (CLI and persistence)."""
    return json.dumps([p.to_dict() for p in passages], ensure_ascii=False)
