"""Documents that would poison a knowledge base, held back before they are embedded.

A document is held (IngestResult status "held", with the reason) when it is near-empty in meaning
or would crowd the rest out of search:

- one word repeated: its most frequent word is at least half of its words (in English prose the
  most frequent word, "the", is about 6%: Zipf's law on the Brown corpus), or it uses five
  different words or fewer in fifty or more;
- empty sections: at least half of its chunks (of twenty or more) hold fewer than three words
  besides their heading ("## Section 1" followed by "." three thousand times);
- a copy: at least 80% of a sample of its chunks are near-duplicates (cosine similarity 0.97 or
  more) of chunks of other documents already stored, or exact copies (same text in its matching
  form) of chunks of a document earlier in the same batch;
- too big a share: it would add more than `max_file_share` of the knowledge base's chunks (the
  setting CHATBOT_MAX_FILE_SHARE), once the base holds `MIN_BASE_CHUNKS` or more.

A held document is refused by name; the Knowledge base page asks the admin to confirm it, and
`ingest(..., allow=names)` ingests the named ones anyway. Thresholds are round values set on the
demo articles, none of which is held (tests/test_knowledge_guard.py), and the measurement in
BENCHMARKS.md ("Junk documents"): between chunks of two different demo articles, the highest
cosine similarity is far below 0.97.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import Collection, Sequence

from common.text import fold
from knowledge.types import Chunk, Document

_WORD = re.compile(r"[^\W_]+")
MIN_WORDS = 20
TOP_WORD_SHARE = 0.5
FEW_DISTINCT_WORDS = 5
EMPTY_CHUNK_WORDS = 3
EMPTY_CHUNK_SHARE = 0.5
MIN_CHUNKS_FOR_EMPTY = 20
NEAR_DUPLICATE_COSINE = 0.97
DUPLICATE_SHARE = 0.8
DUPLICATE_SAMPLE = 16
MIN_BASE_CHUNKS = 100
DEFAULT_MAX_FILE_SHARE = 0.5


def text_key(text: str) -> str:
    """A chunk's text in its matching form, white space collapsed, hashed: equal for exact copies."""
    return hashlib.blake2b(" ".join(fold(text).split()).encode(), digest_size=16).hexdigest()


def near_empty(doc: Document, chunks: Sequence[Chunk]) -> str:
    """Why `doc` says next to nothing ('' when it says something): one word repeated, or empty sections."""
    words = _WORD.findall(fold(doc.text))
    if len(words) >= MIN_WORDS:
        counts = Counter(words)
        word, count = counts.most_common(1)[0]
        if count / len(words) >= TOP_WORD_SHARE:
            return f"is one word repeated (\"{word}\" is {count / len(words):.0%} of its {len(words):,} words)"
        if len(counts) <= FEW_DISTINCT_WORDS and len(words) >= 50:
            return f"uses only {len(counts)} different words in {len(words):,}"
    if len(chunks) >= MIN_CHUNKS_FOR_EMPTY:
        empty = sum(len(_WORD.findall(c.text)) < EMPTY_CHUNK_WORDS for c in chunks)
        if empty / len(chunks) >= EMPTY_CHUNK_SHARE:
            return (f"is mostly empty sections ({empty:,} of its {len(chunks):,} chunks hold fewer than "
                    f"{EMPTY_CHUNK_WORDS} words besides their heading)")
    return ""


def sample(chunks: Sequence[Chunk]) -> list[int]:
    """Indexes of up to DUPLICATE_SAMPLE chunks spread evenly over the document."""
    if len(chunks) <= DUPLICATE_SAMPLE:
        return list(range(len(chunks)))
    step = len(chunks) / DUPLICATE_SAMPLE
    return sorted({int(i * step) for i in range(DUPLICATE_SAMPLE)})


def copy_reason(copied: int, sampled: int, of: str) -> str:
    """The reason for a document most of whose sampled chunks repeat others ('' when few do)."""
    if sampled and copied / sampled >= DUPLICATE_SHARE:
        return f"repeats what the knowledge base already holds ({copied} of {sampled} chunks checked are copies of {of})"
    return ""


def share_reason(adding: int, base: int, max_share: float) -> str:
    """The reason for a document that would make more than `max_share` of the base ('' when it would not)."""
    if max_share <= 0 or base < MIN_BASE_CHUNKS or adding <= 0:
        return ""
    share = adding / (base + adding)
    if share <= max_share:
        return ""
    return (f"would add {adding:,} chunks, {share:.0%} of the knowledge base (the limit is {max_share:.0%}, "
            "CHATBOT_MAX_FILE_SHARE): it would crowd the other articles out of search")


class Screen:
    """One ingestion's screening: what it accepted so far counts towards copies and shares."""

    def __init__(self, kb, encoder, enabled: bool, allow: Collection[str]):
        self.kb, self.encoder, self.enabled, self.allow = kb, encoder, enabled, allow
        self.seen: dict[str, tuple[str, str]] = {}  # text keys of accepted chunks -> (doc_id, source)
        self.accepted = 0  # chunks accepted

    def check(self, job, name: str) -> str:
        """Why `job` (source `name`) is held ('' to ingest it: screening off, the name allowed, or clean)."""
        if self.enabled and name not in self.allow:
            reason = self.kb._hold_reason(job, self.encoder, self.seen, self.accepted)
            if reason:
                return reason
            self.seen.update((text_key(c.text), (job.doc_id, name)) for c in job.chunks)
        self.accepted += len(job.chunks)
        return ""
