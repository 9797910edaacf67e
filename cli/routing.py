"""`evaluate-routing`: train the intent router on one CSV file and score it on another.
`shipped-router`: after editing chatbot/routing/intents.yaml, ship the router fitted on it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


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
    shipped = subparsers.add_parser(
        "shipped-router", help="after editing chatbot/routing/intents.yaml: ship the router fitted on it for a fast first start")
    shipped.set_defaults(func=run_shipped_router)


def run_shipped_router(args: argparse.Namespace) -> int:
    from chatbot.routing.routes import default_routes_path, load_routes
    from chatbot.routing.shipped_router import SHIPPED_ROUTER, write_shipped_router
    from common.settings import Settings
    from knowledge.embeddings import shared_embedder

    count = write_shipped_router(load_routes(default_routes_path()), shared_embedder(Settings.load().embedding_model))
    print(f"fitted on {count} utterances; wrote {SHIPPED_ROUTER}")
    return 0


def run_evaluate_routing(args: argparse.Namespace) -> int:
    from common.settings import Settings
    from bench.routing_eval import evaluate, label_examples, read_labelled
    from chatbot.routing.router import IntentRouter
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
