"""The keyword retriever: chunk rows kept in SQLite, searched by the in-memory BM25 index.

SQLite is the durable copy: the index survives a restart, loading a snapshot when it
matches the rows' revision and rebuilding from the rows when it does not. The same
database holds the in-flight journal of vector-store writes not yet committed.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from knowledge.bm25 import STOP_WORDS, Bm25Index, terms  # noqa: F401 - re-exported
from knowledge.types import Chunk

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    chunk_id TEXT PRIMARY KEY, doc_id TEXT NOT NULL, version TEXT NOT NULL, source TEXT, title TEXT,
    heading TEXT, idx INTEGER, category TEXT, text TEXT);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE TABLE IF NOT EXISTS docs (doc_id TEXT PRIMARY KEY, version TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS in_flight (doc_id TEXT, version TEXT, previous TEXT, PRIMARY KEY (doc_id, version));
"""
# Rows changed since the last snapshot before a new one is written at the end of a write.
SNAPSHOT_AFTER = 5000


@dataclass
class KeywordHit:
    """A stored chunk row, with what a passage needs."""

    chunk_id: str
    score: float
    doc_id: str
    version: str
    source: str
    title: str
    heading: str
    index: int
    category: str
    text: str


def _body(title: str, heading: str, text: str) -> str:
    # The same context the embedding sees: the title and heading name what a chunk is about.
    return f"{title}\n{heading}\n{text}"


class KeywordIndex:
    """BM25 over chunks, one row per chunk id, with documents replaced or deleted as a whole."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._snapshot = self.path.with_name(self.path.name + ".bm25.npz")
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            if self._db.execute("SELECT name FROM sqlite_master WHERE name='chunks'").fetchone():
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(chunks)")}
                if "version" not in columns:  # an older layout (FTS5 table): rebuilt from the vector store
                    self._db.execute("DROP TABLE chunks")
                    self._db.execute("DROP TABLE IF EXISTS docs")
            self._db.executescript(_SCHEMA)
            self._changed = 0
            self._revision = ""
            self._versions: dict[str, str] = {}  # doc_id -> version of what the in-memory index holds
            self.refresh()

    def refresh(self) -> bool:
        """Bring the in-memory index up to the rows if another process changed them; True if it did.

        A running index reads only the documents whose version changed (one ingestion from the
        command line beside the app: milliseconds, where a rebuild took 7 s at 20,000 chunks);
        the first load takes the snapshot, or rebuilds from the rows.
        """
        with self._lock:
            self._db.execute("BEGIN")  # one snapshot of the rows: revision, versions and chunks agree
            try:
                revision = self._state("revision")
                if revision == self._revision and hasattr(self, "_index"):
                    return False
                versions = dict(self._db.execute("SELECT doc_id, version FROM docs").fetchall())
                if hasattr(self, "_index"):
                    self._catch_up(versions)
                else:
                    index = Bm25Index.load(self._snapshot, revision) if revision else None
                    self._index = index if index is not None else self._rebuild()
            finally:
                self._db.execute("COMMIT")
            self._versions = versions
            self._revision = revision
            return True

    def _catch_up(self, versions: dict[str, str]) -> None:
        """Apply other processes' writes: re-read the documents whose version differs from memory's."""
        # A version-less document (written before versions existed) cannot be compared: re-read it.
        changed = [d for d in versions.keys() | self._versions.keys()
                   if versions.get(d) != self._versions.get(d) or not versions.get(d)]
        self._index.remove_documents(changed)
        for start in range(0, len(changed), 500):
            group = changed[start:start + 500]
            rows = self._db.execute(
                "SELECT chunk_id, doc_id, source, category, title, heading, text FROM chunks"
                f" WHERE doc_id IN ({','.join('?' * len(group))})", group,
            ).fetchall()
            self._index.add((cid, doc, source or "", category or "", _body(title, heading, text))
                            for cid, doc, source, category, title, heading, text in rows)
            self._changed += len(rows)
        self._changed += len(changed)

    def _state(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else ""

    def _rebuild(self) -> Bm25Index:
        started = time.perf_counter()
        index = Bm25Index()
        rows = self._db.execute("SELECT chunk_id, doc_id, source, category, title, heading, text FROM chunks")
        while True:
            part = rows.fetchmany(5000)
            if not part:
                break
            index.add((cid, doc, source or "", category or "", _body(title, heading, text))
                      for cid, doc, source, category, title, heading, text in part)
        if index.live_rows:
            log.info("keyword index rebuilt from %d rows in %.1f s", index.live_rows, time.perf_counter() - started)
            self._changed = SNAPSHOT_AFTER  # worth a snapshot at the next write or close
        return index

    # -- writes ----------------------------------------------------------------------

    def apply(
        self,
        replace: Mapping[str, tuple[str, list[Chunk]]] | None = None,
        delete: Iterable[str] = (),
        generation: str | None = None,
    ) -> None:
        """In one transaction: replace documents (doc_id -> (version, chunks)), delete others, record a generation."""
        replace = dict(replace or {})
        doomed = set(delete) | set(replace)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for doc_id in doomed:
                    self._db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
                    self._db.execute("DELETE FROM docs WHERE doc_id = ?", (doc_id,))
                for doc_id, (version, chunks) in replace.items():
                    self._db.executemany(
                        "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [(c.id, doc_id, version, c.source, c.title, c.heading, c.index, c.category, c.text)
                         for c in chunks],
                    )
                    self._db.execute("INSERT OR REPLACE INTO docs VALUES (?, ?)", (doc_id, version))
                if generation is not None:
                    self._db.execute("INSERT OR REPLACE INTO state VALUES ('generation', ?)", (generation,))
                # A new revision: a snapshot of the old rows no longer matches them.
                revision = uuid.uuid4().hex
                self._db.execute("INSERT OR REPLACE INTO state VALUES ('revision', ?)", (revision,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            # Memory follows only a committed transaction.
            self._revision = revision
            for doc_id in doomed:
                self._versions.pop(doc_id, None)
            self._versions.update({doc_id: version for doc_id, (version, _) in replace.items()})
            self._index.remove_documents(doomed)
            self._index.add(
                (c.id, doc_id, c.source, c.category, _body(c.title, c.heading, c.text))
                for doc_id, (_, chunks) in replace.items() for c in chunks
            )
            self._changed += sum(len(chunks) for _, chunks in replace.values()) + len(doomed)

    def replace(self, doc_id: str, chunks: Iterable[Chunk], version: str = "") -> None:
        """Swap one document's rows."""
        self.apply(replace={doc_id: (version, list(chunks))})

    def delete(self, doc_id: str) -> None:
        """Remove one document's rows."""
        self.apply(delete=[doc_id])

    def save_snapshot(self, force: bool = False) -> None:
        """Write the in-memory index beside the database if enough changed since the last one."""
        with self._lock:
            if self._changed >= SNAPSHOT_AFTER or (force and self._changed):
                self._index.save(self._snapshot, self._revision)
                self._changed = 0

    # -- the in-flight journal ---------------------------------------------------------
    # Versions this process is writing to the vector store and has not committed: after
    # a crash, the next start removes them (or, if committed, the versions they replaced).

    def begin(self, entries: Iterable[tuple[str, str, str]]) -> None:
        """Record (doc_id, version, previous version) before their chunks are written."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO in_flight VALUES (?, ?, ?)", list(entries))
            self._db.execute("COMMIT")

    def finish(self, entries: Iterable[tuple[str, str]]) -> None:
        """Forget (doc_id, version) pairs that were committed or cleaned up."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM in_flight WHERE doc_id = ? AND version = ?", list(entries))
            self._db.execute("COMMIT")

    def in_flight(self) -> list[tuple[str, str, str]]:
        """(doc_id, version, previous) of every write not yet finished."""
        with self._lock:
            return self._db.execute("SELECT doc_id, version, previous FROM in_flight").fetchall()

    # -- reads -----------------------------------------------------------------------

    def versions(self) -> dict[str, str]:
        """doc_id -> version of every document in the index."""
        with self._lock:
            return dict(self._db.execute("SELECT doc_id, version FROM docs").fetchall())

    @property
    def generation(self) -> str:
        """The registry generation this index was last brought up to date with ('' if never)."""
        with self._lock:
            return self._state("generation")

    def count(self) -> int:
        """Chunks in the index."""
        with self._lock:
            return self._index.live_rows

    def search(self, text: str, k: int, where: Mapping[str, str] | None = None) -> list[tuple[str, float]]:
        """Top-k (chunk id, BM25 score), higher is better, optionally only one category and/or source."""
        with self._lock:
            return self._index.search(text, k, where)

    def rows(self, chunk_ids: list[str]) -> dict[str, KeywordHit]:
        """The stored rows of these chunk ids (score 0), by id; ids not stored are left out."""
        if not chunk_ids:
            return {}
        marks = ",".join("?" * len(chunk_ids))
        with self._lock:
            found = self._db.execute(
                "SELECT chunk_id, doc_id, version, source, title, heading, idx, category, text"
                f" FROM chunks WHERE chunk_id IN ({marks})",
                list(chunk_ids),
            ).fetchall()
        return {row[0]: KeywordHit(row[0], 0.0, *row[1:]) for row in found}

    def close(self) -> None:
        with self._lock:
            self.save_snapshot(force=True)
            self._db.close()
