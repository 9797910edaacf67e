"""`evaluate-follow-ups`: follow-up questions searched alone and in their conversation."""

from __future__ import annotations

import argparse
import json

from common.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate-follow-ups", help="score follow-up questions searched alone and with the conversation before them"
    )
    parser.add_argument("--docs", default="knowledge/docs", help="folder of documents (default knowledge/docs)")
    parser.add_argument("--queries", default="knowledge/eval/follow_ups.jsonl",
                        help='JSONL, one {"history": [...], "query": ..., "relevant": [...], "kind": ...}')
    parser.add_argument("--k", type=int, default=5, help="documents that count as found (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.follow_ups import KINDS, evaluate_follow_ups
    from knowledge.embeddings import shared_embedder

    settings = Settings.load()
    report = evaluate_follow_ups(args.docs, args.queries, shared_embedder(settings.embedding_model), args.k,
                                 settings.path("knowledge", "embedding-cache.sqlite"))
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{'kind':<11}{'search':<12}{'queries':>8}{f'hit@{args.k}':>8}{f'recall@{args.k}':>10}{'MRR':>8}")
    for kind in KINDS:
        for method in ("alone", "in_context"):
            r = report[f"{kind}_{method}"]
            print(f"{kind:<11}{method:<12}{r['queries']:>8}{r['hit_at_k']:>8.3f}{r['recall_at_k']:>10.3f}"
                  f"{r['mrr']:>8.3f}")
    return 0
