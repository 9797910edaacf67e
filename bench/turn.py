"""`bench-turn`: where the time of one turn goes, and the Chatbot's cost over a bare SDK call."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from common.settings import Settings

QUERIES = [
    "How do I get a refund?", "my camera stopped recording clips", "i was charged twice this month",
    "where is my parcel, its been a week", "how do i reset my password", "can i pause nimbus plus",
    "the thermostat shows an error and wont heat", "delete all my data please", "do you ship to canada",
    "change the email on my account",
]
OVERHEAD = ("validate", "embed", "retrieve", "render")


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser("bench-turn", help="time each stage of a turn, and TTFT against a bare SDK")
    bench.add_argument("--turns", type=int, default=100, help="turns on the offline backend (default 100)")
    bench.add_argument("--ttft-runs", type=int, default=15, help="requests for the time-to-first-token ratio")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(func=run)


def _services(data_dir: Path):
    from chatbot.services import build_services

    return build_services(Settings.load(secrets={}, data_dir=data_dir, session_ttl_days=1))


def bench_stages(services, turns: int) -> dict[str, list[float]]:
    """Per-stage and whole-turn times over `turns` offline turns, five turns per conversation."""
    from backends.offline import OfflineBackend
    from chatbot.turn.bot import STAGES

    bot = services.build_chatbot(OfflineBackend())
    samples: dict[str, list[float]] = {name: [] for name in (*STAGES, "overhead", "turn")}
    session = services.store.new_id()
    bot.ask(session, "warm up")
    for number in range(turns):
        if number % 5 == 0:
            session = services.store.new_id()
        reply = bot.ask(session, QUERIES[number % len(QUERIES)])
        for name in STAGES:
            samples[name].append(reply.meta.stages_ms[name])
        samples["overhead"].append(sum(reply.meta.stages_ms[name] for name in OVERHEAD))
        samples["turn"].append(reply.meta.latency_ms)
    return samples


def bench_ttft(services, runs: int, delay: float = 0.3) -> dict[str, float]:
    """Median time to first token, Chatbot (OpenAI backend) and bare SDK, against one local server."""
    import openai

    from backends.openai_backend import OpenAIBackend
    from devtools.servers.openai import OpenAIServer

    bare: list[float] = []
    through: list[float] = []
    with OpenAIServer(reply="Refunds take 5 to 10 business days [1].", first_token_delay=delay) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-bench", max_retries=0)
        bot = services.build_chatbot(OpenAIBackend("gpt-bench", api_key="sk-bench", base_url=server.base_url))
        session = services.store.new_id()
        for number in range(runs + 1):
            started = time.perf_counter()
            stream = client.chat.completions.create(
                model="gpt-bench", messages=[{"role": "user", "content": QUERIES[0]}], stream=True
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter() - started
                    break
            stream.close()
            started = time.perf_counter()
            reply = bot.send(session, QUERIES[number % len(QUERIES)])
            next(iter(reply))
            chatbot_first = time.perf_counter() - started
            for _ in reply:  # finish the turn so it is persisted like a real one
                pass
            if number:  # the first round warms connections up
                bare.append(first * 1000)
                through.append(chatbot_first * 1000)
    return {
        "bare_ttft_p50_ms": statistics.median(bare),
        "chatbot_ttft_p50_ms": statistics.median(through),
        "ttft_ratio": statistics.median(through) / statistics.median(bare),
    }


def run(args: argparse.Namespace) -> int:
    # The chat core is imported when the benchmark runs, not when the command line starts.
    from chatbot.store.analytics import percentile
    from chatbot.turn.bot import STAGES

    with tempfile.TemporaryDirectory(prefix="bench-turn-") as tmp:
        services = _services(Path(tmp))
        samples = bench_stages(services, args.turns)
        ttft = bench_ttft(services, args.ttft_runs)
        services.knowledge.close()
    result: dict[str, float] = {
        "turns": args.turns,
        "turn_p50_ms": statistics.median(samples["turn"]),
        "turn_p95_ms": percentile(samples["turn"], 95),
        "overhead_p50_ms": statistics.median(samples["overhead"]),
        "overhead_p95_ms": percentile(samples["overhead"], 95),
        **{f"{name}_p95_ms": percentile(samples[name], 95) for name in STAGES},
        **ttft,
    }
    if args.json:
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))
        return 0
    print(f"{args.turns} offline turns on the demo knowledge base")
    print(f"{'stage':<14}{'p50 ms':>10}{'p95 ms':>10}")
    for name in (*STAGES, "overhead", "turn"):
        print(f"{name:<14}{statistics.median(samples[name]):>10.2f}{percentile(samples[name], 95):>10.2f}")
    print(f"time to first token, median: bare SDK {ttft['bare_ttft_p50_ms']:.1f} ms, "
          f"through the Chatbot {ttft['chatbot_ttft_p50_ms']:.1f} ms, ratio {ttft['ttft_ratio']:.3f}")
    return 0
