"""Fine-tuning from a shell: train, make-tiny-model, prepare-dataset, training-jobs, merge-adapter."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="run one fine-tuning job in this process (what the page starts)")
    train.add_argument("--config", required=True, help="the job's YAML file (job.yaml)")
    train.add_argument("--resume", action="store_true", help="continue from the job's last checkpoint")
    train.set_defaults(func=run_train)

    tiny = subparsers.add_parser("make-tiny-model", help="write a tiny random Llama and tokenizer for tests and demos")
    tiny.add_argument("dir")
    tiny.add_argument("--hidden-size", type=int, default=64)
    tiny.add_argument("--layers", type=int, default=2)
    tiny.set_defaults(func=run_make_tiny_model)

    prep = subparsers.add_parser("prepare-dataset", help="validate a dataset, show its statistics, write the split")
    prep.add_argument("input", nargs="?", help="chat JSONL, or CSV/JSONL of pairs (default: the Nimbus Home sample)")
    prep.add_argument("--format", choices=("chat", "pairs"), default="chat")
    prep.add_argument("--instruction", help="pairs: the instruction column")
    prep.add_argument("--response", help="pairs: the response column")
    prep.add_argument("--input-column", help="pairs: an optional extra input column")
    prep.add_argument("--tokenizer", help="base model whose tokenizer measures lengths (default: estimate)")
    prep.add_argument("--max-seq-length", type=int, default=1024)
    prep.add_argument("--val-fraction", type=float, default=0.1)
    prep.add_argument("--out", help="folder for train.jsonl and eval.jsonl")
    prep.set_defaults(func=run_prepare)

    jobs = subparsers.add_parser("training-jobs", help="list, show, stop or resume fine-tuning jobs")
    jobs.add_argument("action", choices=("list", "show", "stop", "resume", "log"))
    jobs.add_argument("job_id", nargs="?")
    jobs.add_argument("--max-steps", type=int, help="resume: train to this many steps in all")
    jobs.set_defaults(func=run_jobs)

    merge = subparsers.add_parser("merge-adapter", help="merge an adapter into its base model")
    merge.add_argument("adapter", nargs="?", help="adapter name or folder")
    merge.add_argument("--out", help="output folder (default <data>/training/merged/<adapter>)")
    merge.add_argument("--config", help="a merge job's YAML (what the page starts)")
    merge.set_defaults(func=run_merge)


def run_train(args: argparse.Namespace) -> int:
    from training import trainer

    trainer.configure_logging()
    return trainer.run(args.config, resume=args.resume)


def run_make_tiny_model(args: argparse.Namespace) -> int:
    from training.tiny_model import make_tiny_model

    path = make_tiny_model(args.dir, hidden_size=args.hidden_size, layers=args.layers)
    print(f"tiny model written to {path}")
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    from training import datasets as ds

    source = Path(args.input) if args.input else ds.SAMPLE_CHAT
    if args.format == "chat":
        result = ds.load_chat_jsonl(source)
    else:
        if not (args.instruction and args.response):
            print("error: pairs need --instruction and --response columns")
            return 2
        kind = "csv" if source.suffix.lower() == ".csv" else "jsonl"
        result = ds.load_pairs(source, kind, args.instruction, args.response, args.input_column)
    tokenizer = None
    if args.tokenizer:
        from training.model_setup import load_tokenizer

        tokenizer = load_tokenizer(args.tokenizer)
    built = ds.build(result, tokenizer, args.max_seq_length, args.val_fraction)
    for issue in built.issues:
        print(f"{issue.level}: {issue}")
    if built.length_message():
        print(f"warning: {built.length_message()}")
    s = built.stats
    print(f"{result.records} records, {len(result.examples)} examples, {len(built.train) + len(built.validation)} "
          f"kept ({len(built.train)} train, {len(built.validation)} validation); tokens "
          f"{'' if built.exact_tokens else '(estimated) '}min {s['min']} median {s['median']} "
          f"p95 {s['p95']} max {s['max']}")
    if args.out:
        ds.write_jsonl(built.train, Path(args.out) / "train.jsonl")
        ds.write_jsonl(built.validation, Path(args.out) / "eval.jsonl")
        print(f"written to {args.out}")
    return 1 if result.errors else 0


def _manager():
    from training.jobs import JobManager

    return JobManager(Settings.load().data_dir)


def run_jobs(args: argparse.Namespace) -> int:
    from training.jobs import summarise_progress

    manager = _manager()
    if args.action == "list":
        for s in manager.list():
            p = summarise_progress(manager.progress(s.id))
            started = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.started_at)) if s.started_at else "-"
            progress = f"step {p['step']}/{p['total']}" if p["total"] else "starting" if s.running else "-"
            print(f"{s.id}  {s.kind:5}  {s.state:9}  {progress}  started {started}"
                  f"  exit {s.exit_code if s.exit_code is not None else '-'}")
        return 0
    if not args.job_id:
        print("error: name a job id")
        return 2
    if args.action == "show":
        status = manager.status(args.job_id)
        summary = summarise_progress(manager.progress(args.job_id))
        summary.pop("train_points")
        summary.pop("eval_points")
        print(json.dumps({"status": status.__dict__, "progress": summary}, indent=2, default=str))
    elif args.action == "log":
        print(manager.log_tail(args.job_id, 80))
    elif args.action == "stop":
        print(f"{args.job_id}: {manager.stop(args.job_id).state}")
    elif args.action == "resume":
        status = manager.resume(args.job_id, max_steps=args.max_steps)
        print(f"{args.job_id}: {status.state} (pid {status.pid})")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from training import export

    if args.config:
        from training.trainer import configure_logging

        configure_logging()
        return export.run_merge_job(args.config)
    if not args.adapter:
        print("error: name an adapter (or --config)")
        return 2
    adapters_dir = Path(Settings.load().data_dir) / "training" / "adapters"
    adapter = Path(args.adapter) if Path(args.adapter).is_dir() else adapters_dir / args.adapter
    out = Path(args.out) if args.out else adapters_dir.parent / "merged" / adapter.name
    print(f"merged model written to {export.merge_adapter(adapter, out)}")
    return 0
