"""A keyword index (SQLite FTS5, BM25 ranking) kept beside the vector store."""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path
from typing import Iterable

from knowledge.types import Chunk

_WORD = re.compile(r"[A-Za-z0-9]+")
# Words that match almost every chunk only dilute BM25.
_STOP = frozenset(
    "a an and are as at be but by can could do does for from how i if in is it me my no not of on or our "
    "so that the their there this to was we what when where which who why will with you your".split()
)


def fts_query(text: str) -> str:
    """An FTS5 MATCH expression: the text's content words OR-ed, each quoted (no syntax injection)."""
    words = [w.lower() for w in _WORD.findall(text)]
    terms = [w for w in dict.fromkeys(words) if w not in _STOP]
    return " OR ".join(f'"{t}"' for t in terms)


class KeywordIndex:
    """BM25 over chunk text; one row per chunk id."""

    def __init__(self, path: str | Path):
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE VIRTUAL TABLE IF NOT EXISTS chunks USING fts5("
                "chunk_id UNINDEXED, doc_id UNINDEXED, category UNINDEXED, source UNINDEXED, body,"
                " tokenize='porter unicode61')"
            )

    def replace(self, doc_id: str, chunks: Iterable[Chunk]) -> None:
        """Swap a document's rows in one transaction."""
        rows = [(c.id, c.doc_id, c.category, c.source, c.embedding_text()) for c in chunks]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
                self._db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                raise

    def delete(self, doc_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def search(self, text: str, k: int, where: dict[str, str] | None = None) -> list[tuple[str, float]]:
        """Top-k (chunk id, BM25 score) pairs, higher is better."""
        expression = fts_query(text)
        if not expression:
            return []
        sql = "SELECT chunk_id, -bm25(chunks) FROM chunks WHERE chunks MATCH ?"
        params: list = [expression]
        for column in ("category", "source"):
            if where and where.get(column):
                sql += f" AND {column} = ?"
                params.append(where[column])
        sql += " ORDER BY bm25(chunks) LIMIT ?"
        params.append(k)
        with self._lock:
            return [(row[0], float(row[1])) for row in self._db.execute(sql, params)]

    def close(self) -> None:
        with self._lock:
            self._db.close()
