"""`evaluate-routing`: train the intent router on one CSV file and score it on another."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from chatbot.errors import ConfigurationError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate-routing",
        help="train the intent router on one CSV and report accuracy, macro-F1, abstentions and latency on another",
    )
    parser.add_argument("--train", required=True, type=Path, help="CSV of labelled messages to train on")
    parser.add_argument("--test", required=True, type=Path, help="CSV of labelled messages to score")
    parser.add_argument("--text-col", default="text", help="column with the message (default: text)")
    parser.add_argument("--label-col", default="category", help="column with the intent (default: category)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a report")
    parser.add_argument("--model", default="", help="embedding model folder (default: the bundled MiniLM)")
    parser.add_argument("--abstain-cost", type=float, default=None,
                        help="cost of an abstention relative to a wrong intent (default: the router's)")
    parser.add_argument("--label-names", action=argparse.BooleanOptionalAction, default=True,
                        help="also train on each label written as words (card_arrival -> 'card arrival'); default on")
    parser.set_defaults(func=run_evaluate_routing)


def read_labelled(path: Path, text_col: str, label_col: str) -> tuple[list[str], list[str]]:
    """Texts and labels from a CSV file, rows with an empty text or label skipped."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {text_col, label_col} - set(reader.fieldnames or [])
            if missing:
                raise ConfigurationError(f"{path}: no column {', '.join(sorted(missing))} (has {reader.fieldnames})")
            rows = [(r[text_col].strip(), r[label_col].strip()) for r in reader]
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    rows = [(t, label) for t, label in rows if t and label]
    if not rows:
        raise ConfigurationError(f"{path}: no labelled rows")
    return [t for t, _ in rows], [label for _, label in rows]


def label_examples(labels: list[str]) -> list[str]:
    """Each distinct label written as words: a free example of what the intent is about."""
    return [" ".join(label.replace("_", " ").replace("-", " ").split()) for label in sorted(set(labels))]


def evaluate(router, embedder, texts: list[str], labels: list[str]) -> dict:
    """Route each message as the app does (embed one, then route) and score the answers."""
    from sklearn.metrics import f1_score

    predictions, latencies = [], []
    for text in texts:
        start = time.perf_counter()
        choice = router.route(text, embedder.embed_one(text))
        latencies.append((time.perf_counter() - start) * 1000)
        predictions.append(choice.intent)
    truth = np.array(labels)
    predicted = np.array(predictions)
    answered = predicted != "unknown"
    return {
        # An abstention counts as a wrong answer.
        "accuracy": float(np.mean(predicted == truth)),
        "macro_f1": float(f1_score(truth, predicted, labels=sorted(set(labels)), average="macro", zero_division=0)),
        "abstain_rate": float(np.mean(~answered)),
        "p50_ms": float(np.percentile(latencies, 50)),
        "p95_ms": float(np.percentile(latencies, 95)),
        "answered_accuracy": float(np.mean(predicted[answered] == truth[answered])) if answered.any() else 0.0,
        "n_test": len(texts),
    }


def run_evaluate_routing(args: argparse.Namespace) -> int:
    from chatbot.config import Settings
    from chatbot.routing import IntentRouter
    from knowledge.embeddings import Embedder

    train_texts, train_labels = read_labelled(args.train, args.text_col, args.label_col)
    test_texts, test_labels = read_labelled(args.test, args.text_col, args.label_col)
    if args.label_names:
        names = sorted(set(train_labels))
        train_texts, train_labels = train_texts + label_examples(names), train_labels + names
    settings = Settings.load()
    embedder = Embedder(args.model or settings.embedding_model or None, cache_dir=Path(settings.data_dir) / "models")
    options = {} if args.abstain_cost is None else {"abstain_cost": args.abstain_cost}
    # Progress on stderr, so that --json output stays one clean line on stdout.
    print(f"embedding and training on {len(train_texts)} messages...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    vectors = embedder.embed(train_texts)
    router = IntentRouter(embedder=embedder, **options).fit(train_texts, train_labels, vectors)
    train_seconds = time.perf_counter() - start
    print(f"trained in {train_seconds:.1f} s; routing {len(test_texts)} messages...", file=sys.stderr, flush=True)
    # Warm-up: the first calls pay for lazy initialisation, not routing.
    for text in test_texts[:5]:
        router.route(text, embedder.embed_one(text))
    report = evaluate(router, embedder, test_texts, test_labels)
    report.update(n_train=len(train_texts), intents=len(set(train_labels)), train_seconds=round(train_seconds, 1),
                  embedding_backend=embedder.backend)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"trained on {report['n_train']} messages, {report['intents']} intents, "
          f"in {train_seconds:.1f} s (embedding included)")
    print(f"scored on  {report['n_test']} messages")
    print(f"accuracy     {report['accuracy']:.4f}  (abstentions count as wrong)")
    print(f"macro-F1     {report['macro_f1']:.4f}")
    print(f"abstain rate {report['abstain_rate']:.4f}  (accuracy when answered {report['answered_accuracy']:.4f})")
    print(f"latency      p50 {report['p50_ms']:.2f} ms, p95 {report['p95_ms']:.2f} ms per message, embedding included")
    return 0
