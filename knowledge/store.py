"""The knowledge base: Chroma for vectors, FTS5 for keywords, fused at query time."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from chatbot.errors import IngestError
from knowledge.chunking import ChunkSettings, chunk_document, content_hash, doc_id_for
from knowledge.embeddings import Embedder
from knowledge.keyword import KeywordIndex
from knowledge.loaders import load_bytes, load_path
from knowledge.types import Chunk, Document, Passage

COLLECTION = "support-knowledge"
# Measured on a real help centre: a convex combination weighted to the vectors beat
# plain reciprocal rank fusion (see DESIGN.md).
VECTOR_WEIGHT = 0.8
ADD_BATCH = 256


@dataclass
class IngestResult:
    """What ingesting one file did."""

    source: str
    status: str  # "added", "updated", "unchanged" or "error"
    chunks: int = 0
    error: str = ""


@dataclass
class DocumentInfo:
    """A row of the documents list."""

    doc_id: str
    source: str
    title: str
    category: str
    chunks: int
    size_bytes: int
    content_hash: str
    ingested_at: float


def make_chroma_client(data_dir: Path | None = None, host: str = "", port: int = 8000, token: str = ""):
    """A Chroma server client when `host` is set, else a persistent client in the data directory."""
    import chromadb

    settings = chromadb.Settings(anonymized_telemetry=False)
    if host:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        return chromadb.HttpClient(host=host, port=port, headers=headers, settings=settings)
    assert data_dir is not None, "data_dir is needed for the embedded store"
    return chromadb.PersistentClient(path=str(data_dir), settings=settings)


class KnowledgeBase:
    """Ingest, list, delete and search support documents."""

    def __init__(
        self,
        client,
        embedder: Embedder,
        index_dir: Path,
        chunking: ChunkSettings = ChunkSettings(),
        collection: str = COLLECTION,
    ):
        self.embedder = embedder
        self.chunking = chunking
        # embedding_function=None: vectors always come from our embedder, and Chroma
        # never tries to download its default model.
        self._collection = client.get_or_create_collection(
            collection, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
        )
        index_dir.mkdir(parents=True, exist_ok=True)
        self.keywords = KeywordIndex(index_dir / "keywords.sqlite")
        self._registry = sqlite3.connect(str(index_dir / "documents.sqlite"), check_same_thread=False)
        self._registry.execute(
            "CREATE TABLE IF NOT EXISTS documents (doc_id TEXT PRIMARY KEY, source TEXT, title TEXT,"
            " category TEXT, chunks INTEGER, size_bytes INTEGER, content_hash TEXT, ingested_at REAL)"
        )
        self._registry.commit()
        self._write_lock = threading.Lock()

    # -- ingestion -------------------------------------------------------------------

    def ingest_document(self, doc: Document) -> IngestResult:
        """Store a loaded document; unchanged content adds nothing, changed content replaces it."""
        digest = content_hash(doc)
        doc_id = doc_id_for(doc.source)
        existing = self.document(doc_id)
        if existing and existing.content_hash == digest:
            return IngestResult(doc.source, "unchanged", existing.chunks)
        chunks = chunk_document(doc, self.chunking)
        if not chunks:
            raise IngestError(doc.source, "contains no text")
        vectors = self.embedder.embed([c.embedding_text() for c in chunks])
        with self._write_lock:
            self._replace_chunks(doc_id, chunks, vectors)
            self._registry.execute(
                "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (doc_id, doc.source, doc.title, doc.category, len(chunks), doc.size_bytes, digest, time.time()),
            )
            self._registry.commit()
        return IngestResult(doc.source, "updated" if existing else "added", len(chunks))

    def _replace_chunks(self, doc_id: str, chunks: list[Chunk], vectors: np.ndarray) -> None:
        self._collection.delete(where={"doc_id": doc_id})
        for start in range(0, len(chunks), ADD_BATCH):
            batch = chunks[start:start + ADD_BATCH]
            self._collection.add(
                ids=[c.id for c in batch],
                embeddings=vectors[start:start + ADD_BATCH],
                documents=[c.text for c in batch],
                metadatas=[
                    {"doc_id": c.doc_id, "source": c.source, "title": c.title, "heading": c.heading,
                     "chunk": c.index, "category": c.category}
                    for c in batch
                ],
            )
        self.keywords.replace(doc_id, chunks)

    def ingest_file(self, path: str | Path) -> IngestResult:
        """Load and store one file, reporting an error instead of raising."""
        try:
            return self.ingest_document(load_path(path))
        except IngestError as exc:
            return IngestResult(Path(path).name, "error", error=exc.reason)

    def ingest_upload(self, name: str, data: bytes) -> IngestResult:
        """Load and store uploaded bytes, reporting an error instead of raising."""
        try:
            return self.ingest_document(load_bytes(name, data))
        except IngestError as exc:
            return IngestResult(name, "error", error=exc.reason)

    def ingest_paths(
        self, paths: Iterable[str | Path], progress: Callable[[int, int, IngestResult], None] | None = None
    ) -> list[IngestResult]:
        """Ingest files and folders (recursively), one result per file."""
        files: list[Path] = []
        for p in map(Path, paths):
            files.extend(sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p])
        results = []
        for number, f in enumerate(files, 1):
            result = self.ingest_file(f)
            results.append(result)
            if progress:
                progress(number, len(files), result)
        return results

    def delete(self, doc_id: str) -> bool:
        """Remove a document and its chunks; False if there was none."""
        with self._write_lock:
            if not self.document(doc_id):
                return False
            self._collection.delete(where={"doc_id": doc_id})
            self.keywords.delete(doc_id)
            self._registry.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
            self._registry.commit()
        return True

    # -- listing ---------------------------------------------------------------------

    def documents(self) -> list[DocumentInfo]:
        rows = self._registry.execute("SELECT * FROM documents ORDER BY title").fetchall()
        return [DocumentInfo(*row) for row in rows]

    def document(self, doc_id: str) -> DocumentInfo | None:
        row = self._registry.execute("SELECT * FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        return DocumentInfo(*row) if row else None

    def chunk_count(self) -> int:
        return self._collection.count()

    def chunks_of(self, doc_id: str) -> list[Passage]:
        """A document's chunks in reading order."""
        got = self._collection.get(where={"doc_id": doc_id}, include=["documents", "metadatas"])
        passages = [self._passage(text, meta, 1.0, []) for text, meta in zip(got["documents"], got["metadatas"])]
        return sorted(passages, key=lambda p: p.chunk)

    # -- search ----------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 4,
        query_vector: np.ndarray | None = None,
        where: dict[str, str] | None = None,
        mode: str = "hybrid",
    ) -> list[Passage]:
        """Top-k passages for a query; pass `query_vector` to reuse an embedding."""
        if not query.strip() or self.chunk_count() == 0:
            return []
        candidates = max(k * 4, 20)
        vector_hits: dict[str, tuple[float, str, dict]] = {}
        if mode in ("hybrid", "vector"):
            vector = self.embedder.embed_one(query) if query_vector is None else query_vector
            found = self._collection.query(
                query_embeddings=[np.asarray(vector, dtype=np.float32)],
                n_results=min(candidates, self.chunk_count()),
                where=_chroma_where(where),
                include=["documents", "metadatas", "distances"],
            )
            for cid, text, meta, dist in zip(
                found["ids"][0], found["documents"][0], found["metadatas"][0], found["distances"][0]
            ):
                vector_hits[cid] = (1.0 - float(dist), text, meta)
        keyword_hits = dict(self.keywords.search(query, candidates, where)) if mode in ("hybrid", "keyword") else {}
        scores = _fuse(
            {cid: s for cid, (s, _, _) in vector_hits.items()}, keyword_hits, VECTOR_WEIGHT if mode == "hybrid" else None
        )
        ranked = sorted(scores, key=scores.get, reverse=True)[:k]
        missing = [cid for cid in ranked if cid not in vector_hits]
        if missing:
            got = self._collection.get(ids=missing, include=["documents", "metadatas"])
            for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"]):
                vector_hits[cid] = (0.0, text, meta)
        passages = []
        for cid in ranked:
            if cid not in vector_hits:  # keyword index ahead of a store that lost the chunk
                continue
            _, text, meta = vector_hits[cid]
            found_by = [name for name, hits in (("vector", vector_hits), ("keyword", keyword_hits))
                        if cid in hits and (name != "vector" or cid not in missing)]
            passages.append(self._passage(text, meta, scores[cid], found_by))
        return passages

    @staticmethod
    def _passage(text: str, meta: dict, score: float, retrievers: list[str]) -> Passage:
        return Passage(
            text=text, source=meta["source"], title=meta["title"], chunk=int(meta["chunk"]), score=score,
            heading=meta.get("heading", ""), doc_id=meta["doc_id"], category=meta.get("category", ""),
            retrievers=retrievers,
        )

    def close(self) -> None:
        self.keywords.close()
        self._registry.close()


def _chroma_where(where: dict[str, str] | None) -> dict | None:
    clauses = [{key: value} for key, value in (where or {}).items() if value]
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _normalise(scores: dict[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    span = high - low
    return {k: (v - low) / span if span else 1.0 for k, v in scores.items()}


def _fuse(vector: dict[str, float], keyword: dict[str, float], vector_weight: float | None) -> dict[str, float]:
    """Convex combination of min-max normalised scores; a single retriever keeps its raw score."""
    if vector_weight is None:
        return dict(vector or keyword)
    v, kw = _normalise(vector), _normalise(keyword)
    return {cid: vector_weight * v.get(cid, 0.0) + (1 - vector_weight) * kw.get(cid, 0.0) for cid in {*v, *kw}}


def dump_passages(passages: list[Passage]) -> str:
    """JSON for a list of passages (CLI and persistence)."""
    return json.dumps([p.to_dict() for p in passages], ensure_ascii=False)
