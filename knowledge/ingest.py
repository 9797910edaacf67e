"""Ingestion: load, chunk, embed and write documents, then commit them to the registry.

A batch of documents is embedded and written under fresh versions, recorded first in
the local in-flight journal; one registry upsert then makes the whole batch visible.
Whatever goes wrong before that upsert (an error, a cancel, a crash) leaves nothing
visible, and what was written is removed then or at the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Iterable, Sequence

import numpy as np

from common.errors import IngestError
from knowledge.chunking import ChunkSettings, chunk_document, content_hash, doc_id_for
from knowledge.junk import Screen
from knowledge.loaders import clean_name, load_bytes
from knowledge.registry import DocumentInfo, new_token
from knowledge.sources import name_clashes, path_sources, refused
from knowledge.types import Chunk, Document

log = logging.getLogger(__name__)

# Chunks embedded and written per step: large enough to sort by length and batch the
# writes, small enough that progress and cancellation stay responsive.
EMBED_BATCH = 256
# Chunks per commit: every commit is a few vector-store writes with a fixed cost each.
COMMIT_CHUNKS = 1024

Source = tuple[str, Callable[[], Document]]
Progress = Callable[[int, int, "IngestResult"], None]


@dataclass
class IngestResult:
    """What ingesting one file did."""

    source: str
    status: str  # "added", "updated", "unchanged", "held" (see knowledge/junk.py), "error" or "cancelled"
    chunks: int = 0
    error: str = ""
    position: int = -1  # the source's place in the list given to `ingest`


@dataclass
class _Job:
    doc: Document
    doc_id: str
    digest: str
    version: str
    chunks: list[Chunk]
    vectors: np.ndarray
    todo: set[int]
    previous: DocumentInfo | None
    position: int = 0
    started_at: float = field(default_factory=time.time)


class _Cancelled(Exception):
    pass


class _Results:
    """One result per source, in the sources' order, each reported to `progress` as it is known."""

    def __init__(self, sources: Sequence[Source], progress: Progress | None):
        self.names = [name for name, _ in sources]
        self.results: list[IngestResult | None] = [None] * len(sources)
        self.finished = 0
        self.progress = progress

    def finish(self, position: int, result: IngestResult) -> None:
        result.position = position
        self.results[position] = result
        self.finished += 1
        if self.progress:
            self.progress(self.finished, len(self.results), result)

    def done(self) -> list[IngestResult]:
        """Every result; a source never reached (cancelled) is reported as such."""
        for position, name in enumerate(self.names):
            if self.results[position] is None:
                self.finish(position, IngestResult(name, "cancelled"))
        return self.results  # type: ignore[return-value]


def _load_source(name: str, load: Callable[[], Document]) -> Document | IngestResult:
    """The source's document, or its error result: one unreadable file never fails the others."""
    try:
        return load()
    except IngestError as exc:
        return IngestResult(name, "error", error=exc.reason)
    except Exception as exc:  # noqa: BLE001 - any reader's failure is this file's alone
        log.exception("could not load %s", name)
        return IngestResult(name, "error", error=f"could not be read ({type(exc).__name__}: {exc})")


class Ingestion:
    """The ingestion half of KnowledgeBase (which provides the stores, the lock and the registry view)."""

    def ingest(
        self,
        sources: Sequence[Source],
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        chunk_progress: Callable[[int], None] | None = None,
        force: bool = False,
        vectors=None,
        on_plan: Callable[[int, int], None] | None = None,
        allow: Collection[str] = (),
        guard: bool = True,
    ) -> list[IngestResult]:
        """Ingest (name, loader) pairs; one result per source, in order, reported as each finishes.

        `vectors` embeds this ingestion's texts instead of the store's embedder (vectors shipped
        with the demo articles, say); it must give the same model's vectors. `on_plan(position,
        chunks)` is told how many chunks a source will write once it is chunked, before they are
        embedded, so progress can be shown in chunks. A document that would poison the base (near
        empty, a copy, too big a share: knowledge/junk.py) is "held" with the reason, unless its
        name is in `allow` or `guard` is False (a re-index or a rebuild of documents already in).
        """
        self._refuse_if_model_changed()  # vectors of two models in one collection cannot be searched
        encoder = self._vectors if vectors is None else vectors
        results = _Results(sources, progress)
        self.sync(force=True)
        batch: list[_Job] = []
        waiting = 0
        screen = Screen(self, encoder, guard, allow)
        try:
            for position, (name, load) in enumerate(sources):
                if cancel is not None and cancel.is_set():
                    break
                planned = self._prepare(name, load, force, screen)
                if isinstance(planned, IngestResult):
                    results.finish(position, planned)
                    continue
                planned.position = position
                if on_plan:
                    on_plan(position, len(planned.chunks))
                if any(job.doc_id == planned.doc_id for job in batch):
                    # The same file twice in one go: the later one wins, after the first is committed.
                    self._embed_and_write(batch, cancel, chunk_progress, encoder, results)
                    batch, waiting = [], 0
                    planned = self._plan(planned.doc, force)
                    if isinstance(planned, IngestResult):
                        results.finish(position, planned)
                        continue
                    planned.position = position
                batch.append(planned)
                waiting += len(planned.chunks)
                if waiting >= COMMIT_CHUNKS:
                    self._embed_and_write(batch, cancel, chunk_progress, encoder, results)
                    batch, waiting = [], 0
            if batch:
                self._embed_and_write(batch, cancel, chunk_progress, encoder, results)
        except _Cancelled:
            pass
        return results.done()

    def _embed_and_write(self, batch: list[_Job], cancel, chunk_progress, encoder, results: _Results) -> None:
        """Embed and write a batch of planned documents, each result reported as it is written."""
        for job, result in self._run(batch, cancel, chunk_progress, encoder):
            results.finish(job.position, result)

    def _prepare(self, name: str, load: Callable[[], Document], force: bool, screen: Screen) -> _Job | IngestResult:
        """Load, chunk and screen one source: its job, or its result when there is nothing to embed."""
        doc = _load_source(name, load)
        if isinstance(doc, IngestResult):
            return doc
        planned = self._plan(doc, force)
        if isinstance(planned, IngestResult):
            return planned
        reason = screen.check(planned, name)
        return IngestResult(name, "held", len(planned.chunks), error=reason) if reason else planned

    def _plan(self, doc: Document, force: bool = False) -> _Job | IngestResult:
        digest = content_hash(doc)
        doc_id = doc_id_for(doc.source)
        previous = self._docs.get(doc_id)
        settings = self.chunking
        if (
            previous and not force and previous.content_hash == digest
            and (previous.chunk_size, previous.chunk_overlap) == (settings.size, settings.overlap)
        ):
            return IngestResult(doc.source, "unchanged", previous.chunks)
        chunks = chunk_document(doc, settings)
        if not chunks:
            return IngestResult(doc.source, "error", error="contains no text")
        version = new_token()
        for c in chunks:
            c.version = version
        vectors = np.zeros((len(chunks), self.embedder.dimension), dtype=np.float32)
        todo = set(range(len(chunks)))
        if previous:
            # Unchanged chunks of a changed document keep their vectors: only new text is embedded.
            known = {
                _chunk(text, meta).embedding_text(): vector
                for text, meta, vector in self._get_chunks(
                    {"$and": [{"doc_id": doc_id}, {"version": previous.version}]}, include_vectors=True
                )
            }
            for i, c in enumerate(chunks):
                vector = known.get(c.embedding_text())
                if vector is not None:
                    vectors[i] = vector
                    todo.discard(i)
        return _Job(doc, doc_id, digest, version, chunks, vectors, todo, previous)

    def _run(self, batch: list[_Job], cancel, chunk_progress, encoder) -> list[tuple[_Job, IngestResult]]:
        """Embed and write a batch of documents, then commit them together."""
        with self._writing():
            for job in batch:  # up to date under the write lock: another process may have replaced one since
                job.previous = self._docs.get(job.doc_id)
            pending = [(j.doc_id, j.version) for j in batch]
            self.keywords.begin([(j.doc_id, j.version, j.previous.version if j.previous else "") for j in batch])
            try:
                flat = [(job, i) for job in batch for i in range(len(job.chunks))]
                for start in range(0, len(flat), EMBED_BATCH):
                    if cancel is not None and cancel.is_set():
                        raise _Cancelled
                    group = flat[start:start + EMBED_BATCH]
                    need = [(job, i) for job, i in group if i in job.todo]
                    if need:
                        embedded = encoder.embed([job.chunks[i].embedding_text() for job, i in need])
                        for (job, i), vector in zip(need, embedded):
                            job.vectors[i] = vector
                    self._write(group)
                    if chunk_progress:
                        chunk_progress(len(group))
                if cancel is not None and cancel.is_set():
                    raise _Cancelled
                self._commit(batch, pending, encoder)
            except BaseException:
                self._discard(pending)
                raise
        return [(job, IngestResult(job.doc.source, "updated" if job.previous else "added", len(job.chunks)))
                for job in batch]

    def _write(self, group: list[tuple[_Job, int]]) -> None:
        limit = self._max_batch
        for start in range(0, len(group), limit):
            part = [job.chunks[i] for job, i in group[start:start + limit]]
            self._chunks.add(
                ids=[c.id for c in part],
                embeddings=np.stack([job.vectors[i] for job, i in group[start:start + limit]]),
                documents=[c.text for c in part],
                metadatas=[_metadata(c) for c in part],
            )

    def _commit(self, batch: list[_Job], pending: list[tuple[str, str]], encoder) -> None:
        now = time.time()
        size, overlap = self.chunking.size, self.chunking.overlap
        infos = [
            DocumentInfo(j.doc_id, j.doc.source, j.doc.title, j.doc.category, len(j.chunks), j.doc.size_bytes,
                         j.digest, now, j.version, size, overlap)
            for j in batch
        ]
        titles = encoder.embed([j.doc.title for j in batch])
        generation = new_token()
        current = self._registry.state().get("generation", "") == self._generation
        self._registry.commit(generation, self._settings_state(),
                              [(i, j.doc, t) for i, j, t in zip(infos, batch, titles)])
        # Committed: from here on a failure must not discard these versions.
        docs, vectors = dict(self._docs), dict(self._titles)
        docs.update({info.doc_id: info for info in infos})
        vectors.update({info.doc_id: t for info, t in zip(infos, titles)})
        self._docs, self._titles = docs, vectors
        # If another process had committed since our last sync, our index is not at the new
        # generation: keep the old token so the next sync catches up (as it does if this fails).
        followed = generation if current else self._generation or ""
        self.keywords.apply(replace={j.doc_id: (j.version, j.chunks) for j in batch}, generation=followed)
        self._generation = followed
        for job in batch:
            if job.previous and job.previous.version != job.version:
                self._delete_version(job.doc_id, job.previous.version)
        # Only now: a crash before this line leaves the journal entries for the next start's sweep.
        self.keywords.finish(pending)

    def _discard(self, pending: list[tuple[str, str]]) -> None:
        """Remove an uncommitted batch's chunks; if that fails too, the next start's sweep does it."""
        try:
            for doc_id, version in pending:
                if not (doc_id in self._docs and self._docs[doc_id].version == version):
                    self._delete_version(doc_id, version)
            self.keywords.finish(pending)
        except Exception as exc:  # noqa: BLE001 - the original error is the one to report
            log.warning("could not remove an unfinished ingestion's chunks yet: %s", exc)

    def ingest_document(self, doc: Document) -> IngestResult:
        """Store a loaded document; unchanged content adds nothing, changed content replaces it."""
        result = self.ingest([(doc.source, lambda: doc)])[0]
        if result.status == "error":
            raise IngestError(doc.source, result.error)
        return result

    def ingest_file(self, path: str | Path) -> IngestResult:
        """Load and store one file, reporting an error instead of raising."""
        return self.ingest_paths([path])[0]

    def ingest_upload(self, name: str, data: bytes) -> IngestResult:
        """Load and store uploaded bytes, reporting an error instead of raising."""
        return self.ingest_uploads([(name, data)])[0]

    def ingest_uploads(self, files: Iterable[tuple[str, bytes]], **options) -> list[IngestResult]:
        """Ingest uploaded (name, bytes) pairs, each stored under its clean name; options as for `ingest`."""
        files = list(files)
        return self.ingest([(clean_name(name), refused(clean_name(name), clash) if clash else
                             (lambda n=name, d=data: load_bytes(n, d)))
                            for (name, data), clash in zip(files, name_clashes([n for n, _ in files]))], **options)

    def ingest_paths(
        self, paths: Iterable[str | Path], progress: Progress | None = None, **options
    ) -> list[IngestResult]:
        """Ingest files and folders (recursively), one result per file.

        A file is named by its path inside the folder given (a file given itself, by its name),
        so files of one name in different folders are different documents; two files given
        that would have the same name are refused by name, the first one kept.
        """
        return self.ingest(path_sources(paths), progress=progress, **options)

    def reindex(
        self, chunking: ChunkSettings | None = None, force: bool = False, **options
    ) -> list[IngestResult]:
        """Re-chunk and re-embed the documents chunked with other settings (all of them with force)."""
        return self.ingest(self.reindex_sources(chunking, force), force=True, guard=False, **options)

    def reindex_sources(self, chunking: ChunkSettings | None = None, force: bool = False) -> list[Source]:
        """Adopt new chunk settings (shared with other replicas) and list the documents to re-chunk."""
        self._refuse_if_model_changed()
        with self._lock:
            if chunking is not None and chunking != self.chunking:
                with self._writing():
                    current = self._registry.state().get("generation", "") == self._generation
                    self.chunking = chunking
                    self._fixed_chunking = False
                    generation = new_token()
                    self._registry.commit(generation, self._settings_state())
                    if current:
                        self._generation = generation
            targets = self.documents() if force else self.needs_reindex()
        return [(d.source, lambda d=d: self._stored_document(d)) for d in targets]

    def _stored_document(self, info: DocumentInfo) -> Document:
        doc = self._registry.document(info.doc_id)
        if doc is None:
            raise IngestError(info.source, "was stored without its text; upload the file again to re-index it")
        return doc

    def needs_reindex(self) -> list[DocumentInfo]:
        """Documents chunked with settings other than the current ones."""
        size, overlap = self.chunking.size, self.chunking.overlap
        return [d for d in self.documents() if (d.chunk_size, d.chunk_overlap) != (size, overlap)]


def _metadata(c: Chunk) -> dict:
    return {"doc_id": c.doc_id, "version": c.version, "source": c.source, "title": c.title, "heading": c.heading,
            "chunk": c.index, "category": c.category}


def _chunk(text: str, meta: dict) -> Chunk:
    return Chunk(doc_id=meta["doc_id"], source=meta["source"], title=meta["title"], heading=meta.get("heading", ""),
                 index=int(meta["chunk"]), text=text, category=meta.get("category", ""),
                 version=meta.get("version", ""))
