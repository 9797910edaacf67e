"""Embedding speed: ONNX thread settings against sentence-transformers, on real customer queries.

    python -m bench.routing_embed [--data /work/shared/data/banking77/train.csv] [--queries 300]

Prints one JSON line per setting: single-query p50/p95 in ms and batch throughput
(sentences per second, batches of 64), plus the cosine between the two paths.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np


def timings(embed_one, texts: list[str]) -> tuple[float, float]:
    for text in texts[:10]:
        embed_one(text)  # warm-up
    spent = []
    for text in texts:
        start = time.perf_counter()
        embed_one(text)
        spent.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(spent, 50)), float(np.percentile(spent, 95))


def throughput(embed, texts: list[str]) -> float:
    start = time.perf_counter()
    embed(texts)
    return len(texts) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    from knowledge.embeddings import Embedder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/banking77/train.csv"))
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--batch", type=int, default=1024, help="sentences for the throughput run")
    parser.add_argument("--reference", action="store_true", help="also time sentence-transformers")
    args = parser.parse_args(argv)
    with open(args.data, newline="", encoding="utf-8") as fh:
        texts = [row["text"].strip() for row in csv.DictReader(fh)]
    rng = np.random.default_rng(0)
    queries = [texts[i] for i in rng.choice(len(texts), args.queries, replace=False)]
    batch = [texts[i] for i in rng.choice(len(texts), args.batch, replace=False)]

    results = {}
    for query_threads, batch_threads in [(1, 1), (2, 2), (1, 2), (2, 1)]:
        embedder = Embedder(query_threads=query_threads, batch_threads=batch_threads)
        p50, p95 = timings(embedder.embed_one, queries)
        rate = throughput(embedder.embed, batch)
        results[(query_threads, batch_threads)] = embedder
        print(json.dumps({"path": "onnx", "query_threads": query_threads, "batch_threads": batch_threads,
                          "query_p50_ms": round(p50, 2), "query_p95_ms": round(p95, 2),
                          "batch_per_s": round(rate)}), flush=True)
    if args.reference:
        reference = Embedder(backend="sentence-transformers")
        p50, p95 = timings(reference.embed_one, queries)
        rate = throughput(reference.embed, batch)
        cosine = np.sum(reference.embed(queries) * results[(2, 2)].embed(queries), axis=1)
        print(json.dumps({"path": "sentence-transformers", "query_p50_ms": round(p50, 2),
                          "query_p95_ms": round(p95, 2), "batch_per_s": round(rate),
                          "min_cosine_to_onnx": round(float(cosine.min()), 6)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
