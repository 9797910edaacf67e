"""`bench-sessions`: many concurrent conversations through the Chatbot on one store.

Checks that no message is lost or reordered and measures the store's share of each turn: the
state read at the start of a turn plus the atomic write at its end, timed around the store calls.
That wall time includes waiting for the interpreter lock while other conversations' threads
compute, so the thread's own CPU time in those calls and the Redis server's time are reported too.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.settings import Settings

if TYPE_CHECKING:
    from chatbot.store.messages import Message

QUERIES = [
    "How do I get a refund?", "my camera stopped recording clips", "i was charged twice this month",
    "where is my parcel, its been a week", "how do i reset my password", "can i pause nimbus plus",
    "the thermostat shows an error and wont heat", "delete all my data please", "do you ship to canada",
    "change the email on my account",
]


class TimedStore:
    """Forwards every call to a ConversationStore and adds its duration to the calling thread's tally."""

    def __init__(self, store: Any):
        self._store = store
        self._local = threading.local()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def timed(*args: Any, **kwargs: Any) -> Any:
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                return attribute(*args, **kwargs)
            finally:
                tally = self._local.__dict__.setdefault("tally", {})
                tally[name] = tally.get(name, 0.0) + (time.perf_counter() - started) * 1000
                # This thread's own CPU time, which leaves out waiting for the interpreter lock.
                tally["cpu"] = tally.get("cpu", 0.0) + (time.thread_time() - cpu) * 1000

        return timed

    def take(self) -> dict[str, float]:
        """This thread's time per store method since the last call, in ms."""
        tally = self._local.__dict__.get("tally", {})
        self._local.tally = {}
        return tally


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser(
        "bench-sessions", help="concurrent conversations on one store: lost or reordered messages, store time")
    bench.add_argument("--conversations", type=int, default=50, help="conversations at once (default 50)")
    bench.add_argument("--turns", type=int, default=20, help="turns per conversation (default 20)")
    bench.add_argument("--workers", type=int, default=0,
                       help="threads (default: one per conversation, all of them at once)")
    bench.add_argument("--pause-ms", type=float, default=0.0,
                       help="mean pause before each turn, as an agent typing (default 0: turns back to back)")
    bench.add_argument("--redis-url", default="", help="a Redis server to use (default: embedded, in a temp dir)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(func=run)


def user_text(conversation: int, turn: int) -> str:
    return f"{QUERIES[(conversation + turn) % len(QUERIES)]} (conversation {conversation}, turn {turn})"


def check(messages: list[Message], conversation: int, turns: int) -> dict[str, int]:
    """Lost, reordered and duplicated messages of one conversation against what was sent."""
    expected = [user_text(conversation, t) for t in range(turns)]
    asked = [m.content for m in messages if m.is_user]
    present = [text for text in asked if text in expected]
    lost_questions = len(set(expected) - set(asked))
    # A reply is lost when a question is not directly followed by an answer.
    lost_replies = sum(
        1 for i, m in enumerate(messages)
        if m.is_user and (i + 1 >= len(messages) or messages[i + 1].is_user)
    )
    in_order = [text for text in expected if text in present]
    reordered = sum(1 for a, b in zip(dict.fromkeys(present), in_order) if a != b)
    return {"lost": lost_questions + lost_replies, "reordered": reordered,
            "duplicated": len(present) - len(set(present))}


def _server_usec(store: Any) -> float:
    """Microseconds the Redis server has spent on commands so far."""
    return float(sum(stat["usec"] for stat in store.client.info("commandstats").values()))


def bench(services: Any, conversations: int, turns: int, workers: int, pause_ms: float = 0.0) -> dict[str, Any]:
    """Run the conversations through one Chatbot on a timed store; samples and the integrity check.

    With `pause_ms`, each turn waits a uniformly random 0 to 2 x pause_ms first, so the
    conversations interleave as agents' messages do instead of all firing at once.
    """
    from backends.offline import OfflineBackend

    bot = services.build_chatbot(OfflineBackend())
    timed = TimedStore(services.store)
    bot.store = timed
    ids = [services.store.new_id() for _ in range(conversations)]
    bot.ask(services.store.new_id(), "warm up")
    timed.take()
    samples: dict[str, list[float]] = {"store": [], "read": [], "write": [], "store_cpu": [], "persist": [],
                                       "turn": []}
    lock = threading.Lock()

    def converse(n: int) -> None:
        pauses = random.Random(n)
        for t in range(turns):
            if pause_ms:
                time.sleep(pauses.uniform(0, 2 * pause_ms) / 1000)
            reply = bot.ask(ids[n], user_text(n, t))
            spent = timed.take()
            with lock:
                samples["read"].append(spent.get("state", 0.0))
                samples["write"].append(spent.get("begin_turn", 0.0) + spent.get("finish_turn", 0.0))
                samples["store"].append(spent.get("state", 0.0) + spent.get("begin_turn", 0.0) + spent.get("finish_turn", 0.0))
                samples["store_cpu"].append(spent.get("cpu", 0.0))
                samples["persist"].append(reply.meta.stages_ms["persist"])
                samples["turn"].append(reply.meta.latency_ms)

    server_before = _server_usec(services.store)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers or conversations) as pool:
        for future in [pool.submit(converse, n) for n in range(conversations)]:
            future.result()
    elapsed = time.perf_counter() - started
    server_ms = (_server_usec(services.store) - server_before) / 1000 / max(1, len(samples["turn"]))
    totals = {"lost": 0, "reordered": 0, "duplicated": 0}
    for n, session_id in enumerate(ids):
        for name, count in check(services.store.messages(session_id), n, turns).items():
            totals[name] += count
    return {"samples": samples, "elapsed_s": elapsed, "server_ms_per_turn": server_ms, **totals}


def run(args: argparse.Namespace) -> int:
    from chatbot.services import build_services
    from chatbot.store.analytics import percentile

    with tempfile.TemporaryDirectory(prefix="bench-sessions-") as tmp:
        settings = Settings.load(secrets={}, data_dir=Path(tmp), redis_url=args.redis_url, session_ttl_days=1)
        services = build_services(settings)
        outcome = bench(services, args.conversations, args.turns, args.workers, args.pause_ms)
        services.knowledge.close()
        if not args.redis_url:
            services.store.client.shutdown(save=False)
    samples = outcome["samples"]
    shares = [s / t * 100 for s, t in zip(samples["store"], samples["turn"]) if t]
    turns_done = len(samples["turn"])
    result: dict[str, Any] = {
        "conversations": args.conversations, "turns": args.turns, "turns_done": turns_done,
        "workers": args.workers or args.conversations, "pause_ms": args.pause_ms,
        "store": "redis-server" if args.redis_url else "embedded",
        "lost": outcome["lost"], "reordered": outcome["reordered"], "duplicated": outcome["duplicated"],
        "turns_per_s": turns_done / outcome["elapsed_s"],
        **{f"{name}_p50_ms": statistics.median(samples[name]) for name in samples},
        **{f"{name}_p95_ms": percentile(samples[name], 95) for name in samples},
        "store_share_p50_pct": statistics.median(shares), "store_share_p95_pct": percentile(shares, 95),
        "server_ms_per_turn": outcome["server_ms_per_turn"],
    }
    if args.json:
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))
        return 0 if result["lost"] == result["reordered"] == result["duplicated"] == 0 else 1
    print(f"{args.conversations} conversations x {args.turns} turns on the {result['store']} store, "
          f"{result['workers']} threads, mean pause {args.pause_ms:g} ms, offline backend: {turns_done} turns, {result['turns_per_s']:.1f} turns/s")
    print(f"lost {result['lost']}, reordered {result['reordered']}, duplicated {result['duplicated']}")
    print(f"{'per turn':<30}{'p50 ms':>10}{'p95 ms':>10}")
    labels = {"store": "store (read + write)", "read": "  state read", "write": "  atomic write",
              "store_cpu": "  of which this thread's CPU", "persist": "persist stage", "turn": "whole turn"}
    for name, label in labels.items():
        print(f"{label:<30}{result[f'{name}_p50_ms']:>10.2f}{result[f'{name}_p95_ms']:>10.2f}")
    print(f"store share of a turn: p50 {result['store_share_p50_pct']:.1f}%, p95 {result['store_share_p95_pct']:.1f}%; "
          f"Redis server time {result['server_ms_per_turn']:.3f} ms per turn (mean)")
    return 0 if result["lost"] == result["reordered"] == result["duplicated"] == 0 else 1
