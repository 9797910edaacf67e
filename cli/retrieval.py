"""`evaluate-retrieval` and `bench-knowledge`: how well and how fast the knowledge base finds passages."""

from __future__ import annotations

import argparse
import json
import sys

from common.settings import Settings

METRICS = ("recall_at_1", "recall_at_k", "mrr", "ndcg_at_k", "p50_ms", "p95_ms")


def register(subparsers: argparse._SubParsersAction) -> None:
    evaluate = subparsers.add_parser(
        "evaluate-retrieval", help="score search on a folder of documents and a JSONL query set"
    )
    evaluate.add_argument("--docs", required=True, help="folder of documents to ingest into a temporary store")
    evaluate.add_argument("--queries", required=True, help='JSONL, one {"query": ..., "relevant": [file names]}')
    evaluate.add_argument("--k", type=int, default=5, help="documents that count as found (default 5)")
    evaluate.add_argument("--mode", choices=("hybrid", "vector", "keyword", "all"), default="hybrid",
                          help="retrievers to use; 'all' compares every mode and fusion (default hybrid)")
    evaluate.add_argument("--fusion", choices=("convex", "rrf"), default=None,
                          help="how hybrid search fuses the two rankings (default: the app's)")
    evaluate.add_argument("--no-document-evidence", action="store_true",
                          help="hybrid without the title and same-document passage evidence")
    evaluate.add_argument("--no-cache", action="store_true",
                          help="embed every chunk afresh instead of reusing the data directory's vector cache")
    evaluate.add_argument("--misses", action="store_true", help="list the queries whose documents were not found")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(func=run_evaluate)

    bench = subparsers.add_parser(
        "bench-knowledge", help="ingestion throughput and query latency on N synthetic chunks"
    )
    bench.add_argument("--chunks", type=int, required=True, help="synthetic chunks to ingest")
    bench.add_argument("--queries", type=int, default=300, help="timed hybrid queries (default 300)")
    bench.add_argument("--chunk-words", type=int, default=60, help="words per synthetic chunk (default 60)")
    bench.add_argument("--stand-in-vectors", action="store_true",
                       help="random vectors for the chunks (queries still use the model): measures the store "
                            "at a size whose embedding would take hours; ingestion with embedding is not measured")
    bench.add_argument("--keep", default="", help="build the store in this folder and keep it (default: temporary)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(func=run_bench)


def _embedder():
    from knowledge.embeddings import shared_embedder

    return shared_embedder(Settings.load().embedding_model)


def run_evaluate(args: argparse.Namespace) -> int:
    from knowledge.evaluation import CONFIGURATIONS, evaluate_folder

    if args.k < 1:
        print("error: --k must be at least 1", file=sys.stderr)
        return 2
    evidence = False if args.no_document_evidence else None
    configurations = CONFIGURATIONS if args.mode == "all" else ((args.mode, args.fusion, evidence),)
    settings = Settings.load()
    cache = False if args.no_cache else settings.path("knowledge", "embedding-cache.sqlite")
    reports, ingest_s = evaluate_folder(args.docs, args.queries, _embedder(), args.k, configurations, cache)
    if args.json:
        shown = [{key: round(r[key], 4) for key in METRICS} | {
            "mode": r["mode"], "fusion": r["fusion"], "document_evidence": r["document_evidence"],
            "queries": r["queries"], "k": r["k"], "ingest_s": round(ingest_s, 2)} for r in reports]
        print(json.dumps(shown[0] if len(shown) == 1 else {_label(r): s for r, s in zip(reports, shown)}))
        return 0
    print(f"{reports[0]['queries']} queries, k={args.k}; documents ingested in {ingest_s:.1f} s")
    print(f"{'search':<20}{'recall@1':>10}{f'recall@{args.k}':>10}{'MRR':>8}{f'nDCG@{args.k}':>9}"
          f"{'p50 ms':>9}{'p95 ms':>9}")
    for r in reports:
        print(f"{_label(r):<20}{r['recall_at_1']:>10.3f}{r['recall_at_k']:>10.3f}{r['mrr']:>8.3f}"
              f"{r['ndcg_at_k']:>9.3f}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}")
    if args.misses:
        for r in reports:
            print(f"\n{_label(r)}: {len(r['misses'])} queries with no relevant document in the top {args.k}")
            for miss in r["misses"]:
                print(f"  {miss['query']!r}: wanted {', '.join(miss['relevant'])}; got {', '.join(miss['found'])}")
    return 0


def _label(report: dict) -> str:
    if report["mode"] != "hybrid":
        return report["mode"]
    return f"hybrid-{report['fusion']}" + ("+doc" if report["document_evidence"] else "")


def run_bench(args: argparse.Namespace) -> int:
    from bench.knowledge_store import run_benchmark

    if args.chunks < 1:
        print("error: --chunks must be at least 1", file=sys.stderr)
        return 2
    result = run_benchmark(args.chunks, _embedder(), queries=args.queries, chunk_words=args.chunk_words,
                           folder=args.keep or None, progress=sys.stderr, stand_in_vectors=args.stand_in_vectors)
    if args.json:
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))
        return 0
    print(f"{result['chunks']} synthetic chunks of about {args.chunk_words} words"
          + (" (stand-in chunk vectors)" if args.stand_in_vectors else ""))
    with_embedding = result["ingest_chunks_per_s"]
    print(f"ingestion: {'not measured' if with_embedding is None else f'{with_embedding:.0f} chunks/s'} with "
          f"embedding, {result['ingest_chunks_per_s_without_embedding']:.0f} chunks/s without "
          f"({result['ingest_s']:.1f} s in all, {result['embed_s']:.1f} s embedding)")
    print(f"hybrid query, embedding included: p50 {result['query_p50_ms']:.1f} ms, p95 {result['query_p95_ms']:.1f} ms")
    print(f"hybrid query, search only:        p50 {result['search_p50_ms']:.1f} ms, "
          f"p95 {result['search_p95_ms']:.1f} ms")
    return 0
