"""A persistent cache of chunk vectors, so text already embedded is not embedded again.

Embedding is nearly all of an ingestion's time; a store rebuilt from the same files
(every `evaluate-retrieval` run builds a temporary one) meets only text seen before.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

MAX_ENTRIES = 100_000  # about 160 MB of 384-d vectors at most


class EmbeddingCache:
    """Wraps an embedder: `embed` looks texts up by model and content before embedding the rest."""

    def __init__(self, embedder, path: str | Path, max_entries: int = MAX_ENTRIES):
        self.embedder = embedder
        self.dimension = embedder.dimension
        self.max_entries = max_entries
        # The model's identity is part of the key: another model's vectors are never served.
        # So is the text form it embeds: vectors of texts embedded before normalisation are not served.
        self._model = (f"{getattr(embedder, 'model_path', type(embedder).__name__)}|{self.dimension}"
                       f"|{getattr(embedder, 'model_id', '')}")
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")

    def _key(self, text: str) -> bytes:
        return hashlib.blake2b(f"{self._model}\x00{text}".encode(), digest_size=16).digest()

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Vectors for `texts`, from the cache where possible; new ones are stored."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        keys = [self._key(t) for t in texts]
        found: dict[bytes, bytes] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                part = keys[start:start + 500]
                marks = ",".join("?" * len(part))
                found.update(self._db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", part))
        missing = [i for i, key in enumerate(keys) if key not in found]
        for i, key in enumerate(keys):
            if key in found:
                out[i] = np.frombuffer(found[key], dtype=np.float32)
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if missing:
            vectors = np.asarray(self.embedder.embed([texts[i] for i in missing], batch_size=batch_size),
                                 dtype=np.float32)
            out[missing] = vectors
            rows = [(keys[i], vectors[n].tobytes()) for n, i in enumerate(missing)]
            with self._lock:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)
                self._db.execute("COMMIT")
                self._trim()
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """Queries are not cached: each is embedded once per turn anyway."""
        return self.embedder.embed_one(text)

    def _trim(self) -> None:
        # Oldest rows first (rowid order is insertion order); checked cheaply through max(rowid).
        newest = self._db.execute("SELECT max(rowid) FROM vectors").fetchone()[0] or 0
        if newest > self.max_entries * 1.1:
            count = self._db.execute("SELECT count(*) FROM vectors").fetchone()[0]
            if count > self.max_entries:
                self._db.execute(
                    "DELETE FROM vectors WHERE rowid IN (SELECT rowid FROM vectors ORDER BY rowid LIMIT ?)",
                    (count - self.max_entries,),
                )

    def close(self) -> None:
        with self._lock:
            self._db.close()
