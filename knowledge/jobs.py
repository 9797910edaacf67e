"""An ingestion running in a background thread: per-file progress, results and cancellation.

A page starts one and polls it; the work goes on between reruns, and a cancel takes
effect at the next file or batch boundary, leaving no half-document visible.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Collection

from common.errors import ChatbotError, IngestError
from knowledge.chunking import ChunkSettings
from knowledge.loaders import clean_name, load_bytes
from knowledge.sources import name_clashes
from knowledge.memory import give_back_memory
from knowledge.store import IngestResult, KnowledgeBase


@dataclass
class FileProgress:
    """Where one file of a job stands."""

    name: str
    state: str = "waiting"  # waiting, reading, embedding, then an IngestResult status
    chunks: int = 0
    error: str = ""
    # Chunks this file will write: estimated from its size until it is chunked, then exact.
    expected_chunks: int = 0
    size_bytes: int = 0


def estimate_chunks(size_bytes: int, chunking: ChunkSettings) -> int:
    """About how many chunks `size_bytes` of text make (each chunk adds size - overlap characters)."""
    return max(1, -(-size_bytes // max(1, chunking.size - chunking.overlap)))


class IngestionJob:
    """Uploads or a re-index, run by `start()` in a daemon thread; read its fields to show progress."""

    def __init__(self, kb: KnowledgeBase, uploads: list[tuple[str, bytes]] | None = None,
                 reindex: ChunkSettings | None = None, force: bool = False, rebuild: bool = False,
                 allow: Collection[str] = ()):
        self.kb = kb
        self.uploads = list(uploads or [])  # kept, so that held files can be confirmed and sent again
        self.allow = {clean_name(name) for name in allow}
        self.kind = "rebuild" if rebuild else "re-index" if uploads is None else "upload"
        self._cancel = threading.Event()
        self.chunks_written = 0
        self.error = ""
        self.started_at = self.finished_at = 0.0
        if rebuild:  # every document re-embedded with the running model (knowledge/reembed.py)
            self._sources = kb.rebuild_sources()
        elif uploads is None:
            self._sources = kb.reindex_sources(reindex, force=force)
        else:
            clashes = name_clashes([name for name, _ in uploads])
            self._sources = [(clean_name(name), self._loader(i, name, data, clash))
                             for i, ((name, data), clash) in enumerate(zip(uploads, clashes))]
        self.files = [FileProgress(name) for name, _ in self._sources]
        if uploads is not None:
            for f, (_, data) in zip(self.files, uploads):
                f.size_bytes = len(data)
                f.expected_chunks = estimate_chunks(len(data), kb.chunking)
        self.embedding_started_at = 0.0
        self._thread = threading.Thread(target=self._work, name="knowledge-ingestion", daemon=True)

    def _loader(self, position: int, name: str, data: bytes, clash: str = ""):
        def load():
            if clash:
                raise IngestError(clean_name(name), clash)
            if self.files[position].state == "waiting":
                self.files[position].state = "reading"
            return load_bytes(name, data)
        return load

    def start(self) -> "IngestionJob":
        self.started_at = time.time()
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Stop at the next file or batch boundary; what was not committed is removed."""
        self._cancel.set()

    @property
    def cancelling(self) -> bool:
        return self._cancel.is_set() and self.running

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def finished(self) -> int:
        return sum(f.state not in ("waiting", "reading", "embedding") for f in self.files)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (or `timeout` seconds pass); True if it ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _on_file(self, number: int, total: int, result: IngestResult) -> None:
        f = self.files[result.position]
        f.state, f.chunks, f.error = result.status, result.chunks, result.error

    @property
    def chunks_expected(self) -> int:
        """Chunks the whole job will write: exact for the files already chunked, estimated for the rest."""
        return max(self.chunks_written, sum(f.expected_chunks for f in self.files
                                            if f.state in ("waiting", "reading", "embedding")) + self._chunks_done)

    @property
    def _chunks_done(self) -> int:
        return sum(f.chunks for f in self.files if f.state in ("added", "updated"))

    def seconds_left(self, now: float | None = None) -> float | None:
        """Seconds until the job ends at the embedding rate so far; None before the first chunks."""
        if not self.embedding_started_at or not self.chunks_written:
            return None
        elapsed = (now or time.time()) - self.embedding_started_at
        rate = self.chunks_written / elapsed if elapsed > 0 else 0.0
        return (self.chunks_expected - self.chunks_written) / rate if rate else None

    def _on_plan(self, position: int, chunks: int) -> None:
        self.files[position].expected_chunks = chunks

    def _on_chunks(self, count: int) -> None:
        if not self.embedding_started_at:
            self.embedding_started_at = time.time()
        self.chunks_written += count
        for f in self.files:
            if f.state == "reading":
                f.state = "embedding"

    def _work(self) -> None:
        try:
            results = self.kb.ingest(self._sources, progress=self._on_file, cancel=self._cancel,
                                     chunk_progress=self._on_chunks, force=self.kind == "re-index",
                                     on_plan=self._on_plan, allow=self.allow, guard=self.kind == "upload")
            if self.kind == "rebuild":
                self.kb.finish_rebuild(results)
        except ChatbotError as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a thread's failure must reach the page, not vanish
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            for f in self.files:
                if f.state in ("waiting", "reading", "embedding"):
                    f.state = "cancelled" if self._cancel.is_set() else "error"
                    f.error = f.error or self.error
            give_back_memory()  # the embedder's working memory, freed but kept by malloc
            self.finished_at = time.time()
