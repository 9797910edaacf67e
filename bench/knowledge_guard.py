"""Where two thresholds of a knowledge base that junk cannot poison come from, measured on the demo base:

- the offline backend's relevance floor (backends/offline.py): the best passage's cosine similarity
  for questions the demo knowledge base answers (knowledge/eval/queries.jsonl, 165 customer
  messages) against questions it does not (knowledge/eval/off_topic.jsonl, 30 hand-written
  messages about other things: weather, recipes, trivia);
- the near-duplicate cosine (knowledge/junk.py): the highest similarity between chunks of two
  different demo articles, which a copy must exceed.

Run: `python -m bench.knowledge_guard` (builds the demo base in a temporary folder, from the
shipped vectors, and prints the distributions and what each candidate floor would do).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from chatbot.services import DEMO_DOCS
from knowledge.embeddings import shared_embedder
from knowledge.shipped_vectors import load_shipped
from knowledge.store import KnowledgeBase, make_chroma_client

EVAL = Path(__file__).resolve().parent.parent / "knowledge" / "eval"
K = 4  # passages a turn gives the backend (Settings.top_k)


def best_similarities(kb: KnowledgeBase, queries: list[str]) -> np.ndarray:
    """For each query, the highest cosine similarity among the passages a turn would get."""
    best = []
    for query in queries:
        found = [p.similarity for p in kb.search(query, k=K) if p.similarity is not None]
        best.append(max(found, default=-1.0))
    return np.array(best)


def measure() -> dict:
    """In-scope and off-topic best similarities, with the share each candidate floor keeps or refuses."""
    answered = [json.loads(line)["query"] for line in (EVAL / "queries.jsonl").read_text().splitlines() if line]
    off_topic = [json.loads(line)["query"] for line in (EVAL / "off_topic.jsonl").read_text().splitlines() if line]
    embedder = shared_embedder()
    with tempfile.TemporaryDirectory(prefix="relevance-floor-") as tmp:
        kb = KnowledgeBase(make_chroma_client(Path(tmp) / "chroma"), embedder, Path(tmp) / "index")
        try:
            kb.ingest_paths([DEMO_DOCS], vectors=load_shipped(embedder))
            inside, outside = best_similarities(kb, answered), best_similarities(kb, off_topic)
            across = cross_document_cosine(kb)
        finally:
            kb.close()
    floors = {floor: {"answerable_refused": float(np.mean(inside < floor)),
                      "off_topic_refused": float(np.mean(outside < floor))}
              for floor in (0.15, 0.2, 0.25, 0.3, 0.35)}
    return {"answerable": inside, "off_topic": outside, "floors": floors, "cross_document": across}


def cross_document_cosine(kb: KnowledgeBase) -> np.ndarray:
    """For each stored chunk, its highest cosine similarity to a chunk of another document."""
    got = kb._chunks.get(include=["embeddings", "metadatas"])
    vectors = np.asarray(got["embeddings"], dtype=np.float32)
    docs = np.array([meta["doc_id"] for meta in got["metadatas"]])
    similarity = vectors @ vectors.T
    similarity[docs[:, None] == docs[None, :]] = -1.0
    return similarity.max(axis=1)


def main() -> None:
    result = measure()
    for name in ("answerable", "off_topic", "cross_document"):
        values = result[name]
        print(f"{name:>10}: n={len(values)} min {values.min():.3f} p5 {np.percentile(values, 5):.3f} "
              f"median {np.median(values):.3f} p95 {np.percentile(values, 95):.3f} max {values.max():.3f}")
    for floor, shares in result["floors"].items():
        print(f"floor {floor:.2f}: answerable refused {shares['answerable_refused']:.1%}, "
              f"off-topic refused {shares['off_topic_refused']:.1%}")


if __name__ == "__main__":
    main()
