"""Ingestion throughput and query latency on a synthetic knowledge base of N chunks.

The chunks are recombined sentences of the shipped demo articles, each document
mostly about one article's topic, so word statistics (and so keyword search costs)
look like a help centre's rather than like random text. Queries are the shipped
customer messages.
"""

from __future__ import annotations

import hashlib
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

import numpy as np

from knowledge.evaluation import load_queries, percentile
from knowledge.loaders import load_path
from knowledge.store import KnowledgeBase, make_chroma_client
from knowledge.types import Document, Section

KNOWLEDGE = Path(__file__).resolve().parent.parent / "knowledge"
DEMO_DOCS = KNOWLEDGE / "docs"
DEMO_QUERIES = KNOWLEDGE / "eval" / "queries.jsonl"
CHUNKS_PER_DOCUMENT = 10
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class _TimedEmbedder:
    """Counts the seconds spent embedding, so throughput can be shown without them."""

    def __init__(self, embedder):
        self.embedder = embedder
        self.dimension = embedder.dimension
        self.model_path = getattr(embedder, "model_path", "")
        self.seconds = 0.0

    def embed(self, texts, batch_size: int = 64):
        started = time.perf_counter()
        try:
            return self.embedder.embed(texts, batch_size=batch_size)
        finally:
            self.seconds += time.perf_counter() - started

    def embed_one(self, text: str):
        return self.embedder.embed_one(text)


class _StandInVectors:
    """Random unit vectors, one per distinct text: a store's size and index work without the model's cost."""

    def __init__(self, embedder):
        self.embedder = embedder
        self.dimension = embedder.dimension
        self.model_path = "stand-in"
        self.seconds = 0.0

    def embed(self, texts, batch_size: int = 64):
        seed = int.from_bytes(hashlib.blake2b("".join(texts[:1]).encode(), digest_size=8).digest(), "little")
        vectors = np.random.default_rng(seed).standard_normal((len(texts), self.dimension)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def embed_one(self, text: str):
        return self.embedder.embed_one(text)


class ProgressBar:
    """A one-line text progress bar, redrawn at most twice a second."""

    def __init__(self, total: int, stream: TextIO | None, label: str = "ingesting"):
        self.total, self.stream, self.label = total, stream, label
        self.done = 0
        self.started = self._drawn = time.perf_counter()

    def advance(self, count: int) -> None:
        self.done += count
        now = time.perf_counter()
        if self.stream is not None and (now - self._drawn >= 0.5 or self.done >= self.total):
            self._drawn = now
            rate = self.done / max(now - self.started, 1e-9)
            left = (self.total - self.done) / rate if rate else 0.0
            filled = int(30 * self.done / self.total)
            self.stream.write(
                f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {self.done:,}/{self.total:,} chunks"
                f"  {rate:,.0f}/s  {int(left // 60)}m{int(left % 60):02d}s left "
            )
            if self.done >= self.total:
                self.stream.write("\n")
            self.stream.flush()


def synthetic_documents(chunks: int, chunk_words: int = 60, seed: int = 7) -> list[Document]:
    """Documents totalling `chunks` sections of about `chunk_words` words, one chunk each."""
    rnd = random.Random(seed)
    articles = []
    for path in sorted(DEMO_DOCS.glob("*.md")):
        doc = load_path(path)
        sentences = [s.strip() for section in doc.sections for s in _SENTENCE.split(section.text) if s.strip()]
        articles.append((doc, sentences, [s.heading or doc.title for s in doc.sections]))
    everything = [s for _, sentences, _ in articles for s in sentences]
    documents = []
    for number in range(0, chunks, CHUNKS_PER_DOCUMENT):
        base, sentences, headings = articles[(number // CHUNKS_PER_DOCUMENT) % len(articles)]
        sections = []
        for index in range(min(CHUNKS_PER_DOCUMENT, chunks - number)):
            words: list[str] = []
            picked = []
            while len(words) < chunk_words:
                # Mostly the document's own topic, some of everything else.
                sentence = rnd.choice(sentences if rnd.random() < 0.75 else everything)
                picked.append(sentence)
                words.extend(sentence.split())
            # A reference number keeps every chunk's text distinct, as real articles are.
            text = " ".join(" ".join(words[:chunk_words]).split()) + f" (Ref. KB-{number + index:07d})"
            sections.append(Section(heading=rnd.choice(headings), text=text))
        name = f"synthetic-{number // CHUNKS_PER_DOCUMENT:06d}.md"
        documents.append(Document(source=name, title=f"{base.title} ({number // CHUNKS_PER_DOCUMENT})",
                                  sections=sections, category=base.category, size_bytes=0))
    return documents


def run_benchmark(
    chunks: int, embedder, queries: int = 300, chunk_words: int = 60, folder: str | Path | None = None,
    progress: TextIO | None = sys.stderr, stand_in_vectors: bool = False,
) -> dict:
    """Build a store of `chunks` synthetic chunks, then time hybrid queries as the chat makes them.

    With `stand_in_vectors`, chunks get random vectors instead of the model's (queries are
    still embedded by the model): the store's size and write costs without hours of
    embedding; ingestion with embedding is then not measured.
    """
    documents = synthetic_documents(chunks, chunk_words)
    timed = _StandInVectors(embedder) if stand_in_vectors else _TimedEmbedder(embedder)
    with tempfile.TemporaryDirectory(prefix="bench-knowledge-") as tmp:
        root = Path(folder) if folder else Path(tmp)
        kb = KnowledgeBase(make_chroma_client(root / "chroma"), timed, root / "index")
        try:
            bar = ProgressBar(chunks, progress)
            started = time.perf_counter()
            results = kb.ingest([(d.source, lambda d=d: d) for d in documents], chunk_progress=bar.advance)
            ingest_s = time.perf_counter() - started
            stored = sum(r.chunks for r in results if r.status in ("added", "updated"))
            texts = [q.text for q in load_queries(DEMO_QUERIES)]
            for text in texts[:10]:  # warm up: first calls pay one-off costs
                kb.search(text, k=4, query_vector=embedder.embed_one(text))
            total_ms, search_ms = [], []
            for number in range(queries):
                text = texts[number % len(texts)]
                started = time.perf_counter()
                vector = embedder.embed_one(text)
                middle = time.perf_counter()
                kb.search(text, k=4, query_vector=vector)
                ended = time.perf_counter()
                total_ms.append((ended - started) * 1000)
                search_ms.append((ended - middle) * 1000)
        finally:
            kb.close()
    return {
        "chunks": stored,
        "ingest_chunks_per_s": None if stand_in_vectors else stored / ingest_s,
        "ingest_chunks_per_s_without_embedding": stored / max(ingest_s - timed.seconds, 1e-9),
        "query_p50_ms": statistics.median(total_ms),
        "query_p95_ms": percentile(total_ms, 95),
        "search_p50_ms": statistics.median(search_ms),
        "search_p95_ms": percentile(search_ms, 95),
        "ingest_s": ingest_s,
        "embed_s": timed.seconds,
        "chunk_words": chunk_words,
        "document_vectors": "stand-in" if stand_in_vectors else "model",
        "queries": queries,
    }
