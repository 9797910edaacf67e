"""Retrieval of follow-up questions: the message alone against the message in its conversation.

The set (knowledge/eval/follow_ups.jsonl) has one JSON object a line: `history` (the customer's
earlier messages), `query`, `relevant` (file names that answer it) and `kind`: "follow-up" (the
query leans on the history) or "switch" (a new topic; the history must not pull it back).
Scores as evaluate-retrieval does (knowledge.evaluation.score_ranking), plus hit@k: the share of
queries with at least one relevant document in the top k.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from chatbot.turn.contextual_search import search_in_context
from common.errors import DatasetError
from common.jsonl import json_lines
from knowledge.evaluation import build_temporary, rank_documents, score_ranking
from knowledge.store import KnowledgeBase

KINDS = ("follow-up", "switch")
# Passages asked for, so that k distinct documents can be ranked (as evaluate-retrieval does).
DEPTH = 50


def load_follow_ups(path: str | Path) -> list[dict]:
    """The follow-up set; a bad line is refused with its number."""
    path = Path(path)
    rows = []
    for number, line in json_lines(path.read_text(encoding="utf-8")):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path.name} line {number}: not valid JSON ({exc.msg})", number) from exc
        if not (isinstance(row, dict) and isinstance(row.get("query"), str) and isinstance(row.get("history"), list)
                and isinstance(row.get("relevant"), list) and row.get("kind") in KINDS):
            raise DatasetError(f"{path.name} line {number}: needs query, history, relevant and kind "
                               f"({' or '.join(KINDS)})", number)
        rows.append(row)
    if not rows:
        raise DatasetError(f"{path.name}: no rows")
    return rows


def score(kb: KnowledgeBase, rows: list[dict], k: int = 5) -> dict:
    """Per kind and per method ("alone", "in_context"): hit@k, recall@k and MRR."""
    report: dict = {"k": k}
    for kind in KINDS:
        chosen = [r for r in rows if r["kind"] == kind]
        for method in ("alone", "in_context"):
            scores = []
            for row in chosen:
                vector = kb.embedder.embed_one(row["query"])
                history = row["history"] if method == "in_context" else []
                passages = search_in_context(kb, row["query"], vector, history, DEPTH)
                scores.append(score_ranking(rank_documents(passages), row["relevant"], k))
            report[f"{kind}_{method}"] = {
                "queries": len(chosen),
                "hit_at_k": statistics.fmean(s["mrr"] >= 1 / k for s in scores) if scores else 0.0,
                "recall_at_k": statistics.fmean(s["recall_at_k"] for s in scores) if scores else 0.0,
                "mrr": statistics.fmean(s["mrr"] for s in scores) if scores else 0.0,
            }
    return report


def evaluate_follow_ups(docs: str | Path, rows_path: str | Path, embedder, k: int = 5,
                        embedding_cache: str | Path | bool = False) -> dict:
    """Ingest `docs` into a temporary store and score the follow-up set both ways."""
    rows = load_follow_ups(rows_path)
    with tempfile.TemporaryDirectory(prefix="evaluate-follow-ups-") as tmp:
        kb, _ = build_temporary(docs, embedder, Path(tmp), embedding_cache)
        try:
            return score(kb, rows, k)
        finally:
            kb.close()
