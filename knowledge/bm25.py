"""In-memory BM25: append-only postings arrays, deleted rows masked, snapshots for a fast start.

A query costs a few numpy operations per query term, a few milliseconds at 100,000
chunks (FTS5's bm25() over OR-ed terms took hundreds of milliseconds there).
"""

from __future__ import annotations

import math
import os
import re
from array import array
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import snowballstemmer

from common.text import FOLD_VERSION, fold

_WORD = re.compile(r"[^\W_]+")
# Words that match almost every chunk only dilute BM25.
STOP_WORDS = frozenset(
    "a an and are as at be but by can could do does for from how i if in is it me my no not of on or our "
    "so that the their there this to was we what when where which who why will with you your".split()
)
K1 = 1.2
B = 0.75
# Dead rows are only masked; the postings are compacted once this share of rows is dead.
COMPACT_DEAD_SHARE = 0.3
# A snapshot holds terms as `terms` made them: one made with another text form (before
# normalisation, format 1) is not loaded, and the index is rebuilt from the stored rows.
SNAPSHOT_FORMAT = f"2.{FOLD_VERSION}"

_stemmer = snowballstemmer.stemmer("english")
_stems: dict[str, str] = {}


def _stem(word: str) -> str:
    stem = _stems.get(word)
    if stem is None:
        if not word.isalpha():  # codes and numbers ("e21", "2024") are matched as written
            return word
        stem = _stemmer.stemWord(word)
        if len(_stems) < 500_000:  # bounded: a flood of odd tokens must not grow it forever
            _stems[word] = stem
    return stem


def terms(text: str) -> list[str]:
    """Stemmed content words of a text in its matching form (`common.text.fold`: NFKC, case-folded),
    stop words removed, in order: a chunk and a query written in other forms of the same text
    ("Ｅ－１０２" and "E-102", NFD and NFC) give the same terms."""
    return [_stem(w) for w in _WORD.findall(fold(text)) if w not in STOP_WORDS]


class Bm25Index:
    """BM25 over rows of (chunk id, document id, source, category, text)."""

    def __init__(self) -> None:
        self._vocabulary: dict[str, int] = {}
        self._rows: list[array] = []  # per term id: rows containing it
        self._tfs: list[array] = []  # per term id: the term's count in each of those rows
        self.chunk_ids: list[str | None] = []
        self.row_of: dict[str, int] = {}
        self.doc_rows: dict[str, list[int]] = {}
        self._lengths = array("f")
        self._alive = bytearray()
        self._category = array("i")
        self._source = array("i")
        self._codes: dict[str, int] = {}
        self.live_rows = 0
        self._live_length = 0.0

    def _code(self, value: str) -> int:
        return self._codes.setdefault(value, len(self._codes) + 1)

    def add(self, rows: Iterable[tuple[str, str, str, str, str]]) -> None:
        """Append rows of (chunk_id, doc_id, source, category, body)."""
        term_ids: list[int] = []
        row_numbers: list[int] = []
        counts: list[int] = []
        vocabulary = self._vocabulary
        for chunk_id, doc_id, source, category, body in rows:
            row = len(self.chunk_ids)
            words = terms(body)
            for word, count in Counter(words).items():
                term = vocabulary.get(word)
                if term is None:
                    term = vocabulary[word] = len(vocabulary)
                    self._rows.append(array("i"))
                    self._tfs.append(array("f"))
                term_ids.append(term)
                row_numbers.append(row)
                counts.append(count)
            self.chunk_ids.append(chunk_id)
            self.row_of[chunk_id] = row
            self.doc_rows.setdefault(doc_id, []).append(row)
            self._lengths.append(len(words))
            self._alive.append(1)
            self._category.append(self._code(category))
            self._source.append(self._code(source))
            self.live_rows += 1
            self._live_length += len(words)
        if not term_ids:
            return
        # One extend per term instead of one append per posting.
        by_term = np.asarray(term_ids, dtype=np.int64)
        order = np.argsort(by_term, kind="stable")
        sorted_terms = by_term[order]
        all_rows = np.asarray(row_numbers, dtype=np.int32)[order]
        all_tfs = np.asarray(counts, dtype=np.float32)[order]
        starts = np.flatnonzero(np.r_[True, sorted_terms[1:] != sorted_terms[:-1]])
        ends = np.r_[starts[1:], len(sorted_terms)]
        for start, end in zip(starts, ends):
            term = int(sorted_terms[start])
            self._rows[term].frombytes(all_rows[start:end].tobytes())
            self._tfs[term].frombytes(all_tfs[start:end].tobytes())

    def remove_documents(self, doc_ids: Iterable[str]) -> None:
        """Mask every row of these documents; compact once enough rows are dead."""
        for doc_id in doc_ids:
            for row in self.doc_rows.pop(doc_id, []):
                if not self._alive[row]:
                    continue
                self._alive[row] = 0
                self.row_of.pop(self.chunk_ids[row], None)
                self.chunk_ids[row] = None
                self.live_rows -= 1
                self._live_length -= self._lengths[row]
        dead = len(self.chunk_ids) - self.live_rows
        if dead and dead > COMPACT_DEAD_SHARE * len(self.chunk_ids):
            self._compact()

    def _compact(self) -> None:
        """Drop dead rows from every postings list and renumber the living ones."""
        alive = np.frombuffer(bytes(self._alive), dtype=np.uint8).astype(bool)
        new_row = (np.cumsum(alive, dtype=np.int64) - 1).astype(np.int32)
        kept_terms: dict[str, int] = {}
        rows_out, tfs_out = [], []
        for word, term in self._vocabulary.items():
            rows = np.frombuffer(self._rows[term], dtype=np.int32)
            keep = alive[rows]
            if keep.any():
                kept_terms[word] = len(rows_out)
                rows_out.append(array("i", new_row[rows[keep]].tobytes()))
                tfs_out.append(array("f", np.frombuffer(self._tfs[term], dtype=np.float32)[keep].tobytes()))
        self._vocabulary, self._rows, self._tfs = kept_terms, rows_out, tfs_out
        kept = np.flatnonzero(alive)
        self.chunk_ids = [self.chunk_ids[i] for i in kept]
        self.row_of = {cid: i for i, cid in enumerate(self.chunk_ids)}
        self.doc_rows = {doc: [int(new_row[r]) for r in rows] for doc, rows in self.doc_rows.items()}
        self._lengths = array("f", np.frombuffer(self._lengths, dtype=np.float32)[kept].tobytes())
        self._category = array("i", np.frombuffer(self._category, dtype=np.int32)[kept].tobytes())
        self._source = array("i", np.frombuffer(self._source, dtype=np.int32)[kept].tobytes())
        self._alive = bytearray(b"\x01" * len(kept))

    def search(self, text: str, k: int, where: Mapping[str, str] | None = None) -> list[tuple[str, float]]:
        """Top-k (chunk id, BM25 score), higher is better, optionally only one category and/or source."""
        words = list(dict.fromkeys(terms(text)))
        total = len(self.chunk_ids)
        if not words or k <= 0 or not self.live_rows:
            return []
        alive = np.frombuffer(bytes(self._alive), dtype=np.uint8)
        lengths = np.frombuffer(self._lengths, dtype=np.float32)
        norm = K1 * (1 - B + B * lengths / (self._live_length / self.live_rows or 1.0))
        scores = np.zeros(total, dtype=np.float32)
        matched = False
        for word in words:
            term = self._vocabulary.get(word)
            if term is None:
                continue
            rows = np.frombuffer(self._rows[term], dtype=np.int32)
            df = int(np.count_nonzero(alive[rows]))
            if not df:
                continue
            matched = True
            tfs = np.frombuffer(self._tfs[term], dtype=np.float32)
            idf = math.log(1 + (self.live_rows - df + 0.5) / (df + 0.5))
            # Each row appears once per postings list, so plain fancy-index addition is exact.
            scores[rows] += idf * tfs * (K1 + 1) / (tfs + norm[rows])
        if not matched:
            return []
        scores *= alive
        for column, codes in (("category", self._category), ("source", self._source)):
            if where and where.get(column):
                scores *= np.frombuffer(codes, dtype=np.int32) == self._codes.get(where[column], -1)
        found = np.flatnonzero(scores > 0)
        if len(found) > k:
            found = found[np.argpartition(-scores[found], k - 1)[:k]]
        found = found[np.argsort(-scores[found], kind="stable")]
        return [(self.chunk_ids[i], float(scores[i])) for i in found]

    # -- snapshots -------------------------------------------------------------------

    def save(self, path: Path, revision: str) -> None:
        """Write the index to `path` (atomically), stamped with the revision of the rows it holds."""
        if len(self.chunk_ids) != self.live_rows:
            self._compact()  # a snapshot holds living rows only
        words = list(self._vocabulary)
        sizes = np.array([len(self._rows[self._vocabulary[w]]) for w in words], dtype=np.int64)
        docs = np.array([doc for doc, rows in self.doc_rows.items() for _ in rows], dtype=str)
        doc_rows = np.array([row for rows in self.doc_rows.values() for row in rows], dtype=np.int32)
        codes = list(self._codes)
        # Its own temporary file: the app and the command line may save the same snapshot at once.
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                meta=np.array([str(SNAPSHOT_FORMAT), revision], dtype=str),
                words=np.array(words, dtype=str),
                sizes=sizes,
                rows=np.frombuffer(b"".join(self._rows[self._vocabulary[w]].tobytes() for w in words),
                                   dtype=np.int32),
                tfs=np.frombuffer(b"".join(self._tfs[self._vocabulary[w]].tobytes() for w in words),
                                  dtype=np.float32),
                chunk_ids=np.array(self.chunk_ids, dtype=str),
                docs=docs, doc_rows=doc_rows,
                lengths=np.frombuffer(self._lengths, dtype=np.float32),
                category=np.frombuffer(self._category, dtype=np.int32),
                source=np.frombuffer(self._source, dtype=np.int32),
                codes=np.array(codes, dtype=str),
                code_values=np.array([self._codes[c] for c in codes], dtype=np.int32),
            )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, revision: str) -> "Bm25Index | None":
        """The index saved at `path` if it holds exactly `revision`, else None."""
        try:
            data = np.load(path, allow_pickle=False)
            if list(data["meta"]) != [str(SNAPSHOT_FORMAT), revision]:
                return None
            index = cls()
            words, sizes = data["words"].tolist(), data["sizes"]
            offsets = np.r_[0, np.cumsum(sizes)]
            rows, tfs = data["rows"], data["tfs"]
            index._vocabulary = {w: i for i, w in enumerate(words)}
            index._rows = [array("i", rows[offsets[i]:offsets[i + 1]].tobytes()) for i in range(len(words))]
            index._tfs = [array("f", tfs[offsets[i]:offsets[i + 1]].tobytes()) for i in range(len(words))]
            index.chunk_ids = data["chunk_ids"].tolist()
            index.row_of = {cid: i for i, cid in enumerate(index.chunk_ids)}
            for doc, row in zip(data["docs"].tolist(), data["doc_rows"].tolist()):
                index.doc_rows.setdefault(doc, []).append(row)
            index._lengths = array("f", data["lengths"].tobytes())
            index._category = array("i", data["category"].tobytes())
            index._source = array("i", data["source"].tobytes())
            index._codes = dict(zip(data["codes"].tolist(), data["code_values"].tolist()))
            index._alive = bytearray(b"\x01" * len(index.chunk_ids))
            index.live_rows = len(index.chunk_ids)
            index._live_length = float(np.sum(data["lengths"], dtype=np.float64))
            return index
        except (OSError, ValueError, KeyError):
            return None
