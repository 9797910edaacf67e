"""Retrieval quality at document level: recall@1, recall@k, MRR, nDCG@k and query latency."""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from common.errors import DatasetError, IngestError
from common.jsonl import json_lines
from knowledge.loaders import decode_text
from knowledge.store import CANDIDATES, KnowledgeBase, make_chroma_client
from common.types import Passage

# (mode, fusion, document evidence) a comparison runs; fusion and evidence only matter for hybrid.
CONFIGURATIONS = (
    ("vector", None, False), ("keyword", None, False),
    ("hybrid", "rrf", False), ("hybrid", "convex", False),
    ("hybrid", "rrf", True), ("hybrid", "convex", True),
)


@dataclass
class Query:
    """One line of a query set: a customer message and the files that answer it."""

    text: str
    relevant: list[str]


def load_queries(path: str | Path, known_sources: Iterable[str] | None = None) -> list[Query]:
    """Read a JSONL query set; a bad line is refused with its number and field."""
    path = Path(path)
    known = set(known_sources) if known_sources is not None else None
    queries = []
    try:
        text = decode_text(path.name, path.read_bytes())
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror})") from exc
    except IngestError as exc:
        raise DatasetError(str(exc)) from exc
    for number, line in json_lines(text):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path.name} line {number}: not valid JSON ({exc.msg})", number) from exc
        query, relevant = row.get("query") if isinstance(row, dict) else None, row.get("relevant") if isinstance(
            row, dict) else None
        if not isinstance(query, str) or not query.strip():
            raise DatasetError(f"{path.name} line {number}: needs a non-empty \"query\" string", number, "query")
        if not isinstance(relevant, list) or not relevant or not all(isinstance(r, str) for r in relevant):
            raise DatasetError(f"{path.name} line {number}: \"relevant\" must be a list of file names",
                               number, "relevant")
        unknown = [r for r in relevant if known is not None and r not in known]
        if unknown:
            raise DatasetError(f"{path.name} line {number}: {', '.join(unknown)} is not among the documents",
                               number, "relevant")
        queries.append(Query(query, relevant))
    if not queries:
        raise DatasetError(f"{path.name}: no queries")
    return queries


def rank_documents(passages: list[Passage]) -> list[str]:
    """Source files in the order of their best passage."""
    return list(dict.fromkeys(p.source for p in passages))


def score_ranking(ranked: list[str], relevant: list[str], k: int) -> dict[str, float]:
    """Per-query recall@1, recall@k, reciprocal rank and nDCG@k (binary relevance)."""
    wanted = set(relevant)
    first = next((rank for rank, source in enumerate(ranked, 1) if source in wanted), None)
    dcg = sum(1 / math.log2(rank + 1) for rank, source in enumerate(ranked[:k], 1) if source in wanted)
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(k, len(wanted)) + 1))
    return {
        "recall_at_1": len(wanted & set(ranked[:1])) / len(wanted),
        "recall_at_k": len(wanted & set(ranked[:k])) / len(wanted),
        "mrr": 1 / first if first else 0.0,
        "ndcg_at_k": dcg / ideal,
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def evaluate(
    kb: KnowledgeBase, queries: list[Query], k: int = 5, mode: str = "hybrid", fusion: str | None = None,
    document_evidence: bool | None = None,
) -> dict:
    """Score a query set against a knowledge base, through the search the chat uses."""
    saved = kb.document_evidence
    if document_evidence is not None:
        kb.document_evidence = document_evidence
    try:
        return _evaluate(kb, queries, k, mode, fusion)
    finally:
        kb.document_evidence = saved


def _evaluate(kb: KnowledgeBase, queries: list[Query], k: int, mode: str, fusion: str | None) -> dict:
    totals = {"recall_at_1": 0.0, "recall_at_k": 0.0, "mrr": 0.0, "ndcg_at_k": 0.0}
    latencies = []
    misses = []
    depth = max(CANDIDATES, 10 * k)  # enough passages to rank k distinct documents
    kb.search("warm up", k=1, mode=mode, fusion=fusion)
    for query in queries:
        started = time.perf_counter()
        # As in a chat turn: the message is embedded once and the vector passed to search.
        vector = kb.embedder.embed_one(query.text) if mode != "keyword" else None
        passages = kb.search(query.text, k=depth, query_vector=vector, mode=mode, fusion=fusion)
        latencies.append((time.perf_counter() - started) * 1000)
        ranked = rank_documents(passages)
        scores = score_ranking(ranked, query.relevant, k)
        for key, value in scores.items():
            totals[key] += value
        if not scores["recall_at_k"]:
            misses.append({"query": query.text, "relevant": query.relevant, "found": ranked[:k]})
    n = len(queries)
    return {
        "mode": mode, "fusion": fusion or (kb.fusion if mode == "hybrid" else None),
        "document_evidence": kb.document_evidence and mode == "hybrid", "k": k, "queries": n,
        **{key: value / n for key, value in totals.items()},
        "p50_ms": statistics.median(latencies), "p95_ms": percentile(latencies, 95),
        "misses": misses,
    }


def build_temporary(
    docs: str | Path, embedder, folder: Path, embedding_cache: str | Path | bool = False
) -> tuple[KnowledgeBase, float]:
    """A knowledge base of `docs` in `folder`; returns it and the ingestion time in seconds."""
    kb = KnowledgeBase(make_chroma_client(folder / "chroma"), embedder, folder / "index",
                       embedding_cache=embedding_cache)
    started = time.perf_counter()
    results = kb.ingest_paths([docs])
    elapsed = time.perf_counter() - started
    failed = [r for r in results if r.status == "error"]
    if failed:
        raise DatasetError("; ".join(f"{r.source}: {r.error}" for r in failed))
    return kb, elapsed


def evaluate_folder(
    docs: str | Path, queries_path: str | Path, embedder, k: int = 5,
    configurations: Iterable[tuple[str, str | None, bool | None]] = (("hybrid", None, None),),
    embedding_cache: str | Path | bool = False,
) -> tuple[list[dict], float]:
    """Ingest `docs` into a temporary store and score each (mode, fusion) configuration."""
    docs = Path(docs)
    if not docs.is_dir():
        raise DatasetError(f"{docs}: not a folder of documents")
    queries = load_queries(queries_path, known_sources=[f.name for f in docs.rglob("*") if f.is_file()])
    with tempfile.TemporaryDirectory(prefix="evaluate-retrieval-") as tmp:
        kb, ingest_s = build_temporary(docs, embedder, Path(tmp), embedding_cache)
        try:
            return [evaluate(kb, queries, k, *configuration) for configuration in configurations], ingest_s
        finally:
            kb.close()
