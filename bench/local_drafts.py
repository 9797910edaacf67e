"""`bench-local-drafts`: whether the bundled model's replies are usable as drafts, before and after the loop guards.

For each demo question (the ones `bench-turn` asks), the exact request a chat turn sends is built: the
question routed to its template, the passages retrieved, the system prompt rendered. The bundled
SmolLM2-135M-Instruct then answers it under each setting from the same random seed:

- **before**: no repetition penalty, no n-gram rule, no stop on a repeated sentence (the Local
  backend as it was);
- **penalties**: the template's `repetition_penalty` and `no_repeat_ngram_size` alone (what they do
  without the stop, which by its making leaves no repeated sentence);
- **after**: the template's settings and the stop before the first repeated sentence
  (backends/repeats.py): the Local backend now.

Per setting it reports the share of replies with a repeated sentence (`repeated_sentences`, the same
test the stop uses: equal words, or a difflib ratio of at least 0.85), the share citing at least one
retrieved passage by an in-range [n] marker (`cited_numbers`, as the chat's Sources list reads them),
and the median and p95 seconds and characters per reply. Each reply is also written, as it finishes, as
one JSON line to `--out`, so that a long run on a busy CPU keeps what it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.turn import QUERIES
from common.settings import Settings

SETTINGS = ("before", "penalties", "after")
# Where the bundled model is converted once per machine; the tests use the same folder (tests/conftest.py).
MODEL_DIR = Path(tempfile.gettempdir()) / "chatbot-test-models"


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser("bench-local-drafts", help="repeated sentences and citations of the bundled "
                                                              "model's replies, before and after the loop guards")
    bench.add_argument("--questions", type=int, default=8, help="demo questions to ask (default 8, at most 10)")
    bench.add_argument("--max-new-tokens", type=int, default=160, help="tokens per reply at most (default 160)")
    bench.add_argument("--threads", type=int, default=1,
                       help="torch threads (default 1: on a shared CPU more threads wait on each other)")
    bench.add_argument("--settings", default=",".join(SETTINGS), help=f"which of {', '.join(SETTINGS)} to run "
                       "(comma-separated; default all)")
    bench.add_argument("--model-dir", default=str(MODEL_DIR),
                       help="the data directory the bundled model is converted into once (default: the tests' one)")
    bench.add_argument("--out", default="", help="also write each reply as a JSON line to this file")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(func=run)


def demo_requests(services, count: int, max_new_tokens: int) -> list:
    """The chat's request for each of the first `count` demo questions, as a turn would render it."""
    from backends.offline import OfflineBackend

    # The offline backend cannot classify, so routing here is the router's alone, like the chat's fast path.
    bot = services.build_chatbot(OfflineBackend())
    requests = []
    for question in QUERIES[:count]:
        vector = services.knowledge.embedder.embed_one(question)
        choice = bot.route(question, vector, bot.memory_for(services.store.new_id()))
        template, version = services.prompts.get(choice.template if choice else "general")
        request = bot.preview(question, template=template, version=version).reply.request
        requests.append(dataclasses.replace(request, max_tokens=max_new_tokens))
    return requests


def answer(backend, request, setting: str, seed: int) -> dict:
    """One reply under `setting`, timed, with what the draft check looks at."""
    import torch

    from backends.repeats import repeated_sentences
    from chatbot.turn.citations import cited_numbers

    if setting == "before":
        request = dataclasses.replace(request, repetition_penalty=1.0, no_repeat_ngram_size=0)
    backend.stop_on_repeat = setting == "after"
    torch.manual_seed(seed)
    started = time.perf_counter()
    text = "".join(piece for piece in backend.stream(request) if isinstance(piece, str))
    return {"setting": setting, "question": request.query, "seconds": round(time.perf_counter() - started, 2),
            "chars": len(text), "repeated": bool(repeated_sentences(text)),
            "cited": cited_numbers(text, len(request.passages)), "text": text}


def summarise(replies: list[dict]) -> dict:
    """Shares and timings per setting."""
    from chatbot.store.analytics import percentile  # imported here: `train` loads no chat core

    result: dict = {}
    for setting in SETTINGS:
        rows = [r for r in replies if r["setting"] == setting]
        if not rows:
            continue
        seconds, chars = [r["seconds"] for r in rows], [r["chars"] for r in rows]
        result[setting] = {
            "replies": len(rows),
            "repeated_share": sum(r["repeated"] for r in rows) / len(rows),
            "citing_share": sum(bool(r["cited"]) for r in rows) / len(rows),
            "seconds_p50": statistics.median(seconds), "seconds_p95": percentile(seconds, 95),
            "chars_p50": statistics.median(chars),
        }
    return result


def run(args: argparse.Namespace) -> int:
    import torch

    from backends.bundled import BUNDLED_MODEL
    from backends.local import LocalBackend
    from chatbot.services import build_services

    torch.set_num_threads(max(1, args.threads))
    out = open(args.out, "a", encoding="utf-8") if args.out else None
    replies: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-drafts-") as tmp:
        settings = Settings.load(secrets={}, data_dir=Path(tmp), session_ttl_days=1)
        services = build_services(settings)
        requests = demo_requests(services, min(args.questions, len(QUERIES)), args.max_new_tokens)
        backend = LocalBackend(BUNDLED_MODEL, data_dir=args.model_dir)
        chosen = [name for name in SETTINGS if name in args.settings.split(",")]
        for seed, request in enumerate(requests):
            for setting in chosen:
                replies.append(answer(backend, request, setting, seed))
                if out:
                    out.write(json.dumps(replies[-1], ensure_ascii=False) + "\n")
                    out.flush()
        services.knowledge.close()
    if out:
        out.close()
    result = summarise(replies)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{len(requests)} demo questions, at most {args.max_new_tokens} new tokens, bundled {BUNDLED_MODEL}")
    print(f"{'setting':<10}{'repeated':>10}{'citing':>8}{'s p50':>8}{'s p95':>8}{'chars p50':>11}")
    for setting, row in result.items():
        print(f"{setting:<10}{row['repeated_share']:>10.0%}{row['citing_share']:>8.0%}{row['seconds_p50']:>8.1f}"
              f"{row['seconds_p95']:>8.1f}{row['chars_p50']:>11.0f}")
    return 0
