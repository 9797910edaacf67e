"""The fine-tuning demo and adapter scoring: finetune-demo, evaluate-adapter."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("finetune-demo", help="LoRA-train the bundled SmolLM2 on the shipped Bitext "
                                 "requests (minutes on a CPU) and print where the adapter went")
    demo.add_argument("--out", required=True, help="folder for the job (out/job) and the adapter (out/adapter)")
    demo.add_argument("--steps", type=int, help="optimiser steps (default 60)")
    demo.add_argument("--examples", type=int, help="use only this many training examples")
    demo.add_argument("--validation", type=int, help="use only this many held-out examples for the eval loss")
    demo.add_argument("--compare", type=int, help="held-out prompts answered before and after (default 8)")
    demo.add_argument("--learning-rate", type=float)
    demo.add_argument("--max-seq-length", type=int)
    demo.set_defaults(func=run_finetune_demo)

    score = subparsers.add_parser("evaluate-adapter", help="score the base model and an adapter on a CSV of "
                                  "instruction/response rows: eval loss, perplexity, ROUGE-L, similarity")
    score.add_argument("--adapter", required=True, help="adapter folder (its base model is read from it)")
    score.add_argument("--data", required=True, help="CSV (or JSONL) with instruction and response columns")
    score.add_argument("--limit", type=int, help="score only the first N rows")
    score.add_argument("--max-new-tokens", type=int, default=128, help="longest generated reply")
    score.add_argument("--batch-size", type=int, default=8)
    score.add_argument("--no-similarity", action="store_true", help="skip the embedding similarity")
    score.add_argument("--json", action="store_true", help="print the scores (and every reply) as JSON")
    score.set_defaults(func=run_evaluate_adapter)


def _quiet_training_logs() -> None:
    from training.trainer import configure_logging, cpu_threads

    configure_logging()
    import torch

    torch.set_num_threads(cpu_threads())


def run_finetune_demo(args: argparse.Namespace) -> int:
    from training.demo import run_demo

    _quiet_training_logs()
    overrides = {k: v for k, v in (("learning_rate", args.learning_rate), ("max_seq_length", args.max_seq_length))
                 if v is not None}
    result = run_demo(args.out, steps=args.steps, examples=args.examples, validation=args.validation,
                      compare=args.compare, **overrides)
    if result.get("state") != "completed":
        print(f"error: the demo job {result.get('state', 'failed')}: {result.get('error') or 'see the log'}")
        return 1
    m = result.get("metrics", {})
    print(f"adapter written to {result['adapter_dir']}")
    print(f"{m.get('steps')} steps in {m.get('duration_s')} s; eval loss {_fmt(m.get('eval_loss_base'))} -> "
          f"{_fmt(m.get('eval_loss'))}; ROUGE-L {_fmt(m.get('rouge_l_base'))} -> {_fmt(m.get('rouge_l_adapter'))}")
    return 0


def run_evaluate_adapter(args: argparse.Namespace) -> int:
    import sys

    from training import datasets as ds
    from training.evaluation import evaluate_adapter

    _quiet_training_logs()
    data = Path(args.data)
    result = ds.load_pairs(data, "csv" if data.suffix.lower() == ".csv" else "jsonl", "instruction", "response")
    examples = result.examples[: args.limit] if args.limit else result.examples
    if not examples:
        print(f"error: {data} holds no usable instruction/response rows")
        return 2
    embed = None
    if not args.no_similarity:
        from knowledge.embeddings import shared_embedder

        embed = shared_embedder().embed
    scores = evaluate_adapter(args.adapter, examples, max_new_tokens=args.max_new_tokens, embed=embed,
                              batch_size=args.batch_size, progress=lambda m: print(m, file=sys.stderr, flush=True))
    if args.no_similarity:
        scores["similarity_base"] = scores["similarity_adapter"] = None
    if args.json:
        print(json.dumps(scores, ensure_ascii=False, indent=2))
        return 0
    print(f"{scores['n']} examples from {data} ({scores['seconds']} s)")
    print(f"{'':22}{'base':>10}{'adapter':>10}")
    for label, key in (("eval loss", "eval_loss"), ("perplexity", "perplexity"), ("ROUGE-L", "rouge_l"),
                       ("embedding similarity", "similarity")):
        print(f"{label:22}{_fmt(scores.get(key + '_base')):>10}{_fmt(scores.get(key + '_adapter')):>10}")
    return 0


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"
