"""`bench-api`: what the HTTP API adds to a request, against the in-process call and a bare FastAPI app.

Both servers run as their own uvicorn process on loopback (`python -m chatbot serve` on the offline
backend, and `bench/bare_api.py`), measured with one keep-alive httpx client per simulated client:
- /v1/classify against `chatbot.turn.classify.classify` in this process (p50/p95 of each, and of the
  paired difference: the calls take turns, and each API call is compared with the in-process call
  next to it);
- /v1/chat against `Chatbot.ask` in this process;
- what the API added to each request: its round trip minus the core time it reports in its
  `Server-Timing` header (api/timing.py);
- time to the first byte of /v1/chat/stream, and of a bare SSE endpoint;
- throughput of /v1/classify and of the bare POST with 1 and 10 concurrent clients, as ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from bench.turn import QUERIES
from common.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
if TYPE_CHECKING:
    import httpx


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser("bench-api", help="the HTTP API's overhead, first SSE byte and throughput")
    bench.add_argument("--requests", type=int, default=200, help="timed requests per measure (default 200)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(func=run)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(command: list[str], env: dict, url: str) -> subprocess.Popen:
    import httpx

    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(1800):
        if process.poll() is not None:
            raise RuntimeError(f"{command} stopped: {process.stderr.read().decode()[-2000:]}")
        try:
            httpx.get(url, timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{command} did not start")


def _interleaved(calls: dict[str, Callable[[int], None]], count: int, warm: int = 10) -> dict[str, list[float]]:
    """Milliseconds per call of each of `calls`, taking turns call by call, so that the load of a
    shared machine falls on every measure alike (a 2-core box shared by several people swings by 3x)."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for n in range(warm + count):
        for name, call in calls.items():
            started = time.perf_counter()
            call(n)
            if n >= warm:
                samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def _first_byte(client: httpx.Client, path: str, body: dict) -> None:
    with client.stream("POST", path, json=body) as response:
        next(response.iter_raw())


def _throughput(url: str, headers: dict, path: str, clients: int, per_client: int) -> float:
    """Requests a second with `clients` threads, each with its own keep-alive connection."""
    import httpx

    def work(number: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
            for n in range(per_client):
                c.post(path, json={"text": QUERIES[(number + n) % len(QUERIES)]}).raise_for_status()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clients * per_client / (time.perf_counter() - started)


def _summary(name: str, samples: list[float]) -> dict[str, float]:
    from chatbot.store.analytics import percentile  # the chat core loads only when this bench runs

    return {f"{name}_p50_ms": statistics.median(samples), f"{name}_p95_ms": percentile(samples, 95)}


def _core_ms(response: httpx.Response) -> float:
    """The time the API says the request spent in the chat core (its `Server-Timing: core;dur=` header)."""
    response.raise_for_status()
    return float(response.headers["Server-Timing"].partition("dur=")[2])


def _latencies(c: httpx.Client, b: httpx.Client, services, bot, count: int) -> dict[str, float]:
    """p50/p95 of each measure, with the calls taking turns, and two views of the API's overhead:
    - `*_overhead`: each API call minus the in-process call next to it (paired; its p95 also holds
      the in-process call's own spread, so it overstates);
    - `*_p95_gap_ms`: the API call's p95 minus the in-process call's p95."""
    from chatbot.turn.classify import classify

    text = lambda n: QUERIES[n % len(QUERIES)]  # noqa: E731
    runs = _interleaved({
        "inprocess_classify": lambda n: classify(bot, text(n)),
        "api_classify": lambda n: c.post("/v1/classify", json={"text": text(n)}).raise_for_status(),
        "bare_post": lambda n: b.post("/bare", json={"text": text(n)}).raise_for_status(),
    }, count)
    runs.update(_interleaved({
        "inprocess_turn": lambda n: bot.ask(services.store.new_id(), text(n)),
        "api_turn": lambda n: c.post("/v1/chat", json={"text": text(n)}).raise_for_status(),
        "api_first_sse_byte": lambda n: _first_byte(c, "/v1/chat/stream", {"text": text(n)}),
        "bare_first_sse_byte": lambda n: _first_byte(b, "/bare/stream", {"text": text(n)}),
    }, count // 2))
    result: dict[str, float] = {}
    for name, samples in runs.items():
        result.update(_summary(name, samples))
    for name, (through, local) in {"classify": ("api_classify", "inprocess_classify"),
                                   "turn": ("api_turn", "inprocess_turn")}.items():
        result.update(_summary(f"{name}_overhead", [a - b for a, b in zip(runs[through], runs[local])]))
        result[f"{name}_p95_gap_ms"] = result[f"{through}_p95_ms"] - result[f"{local}_p95_ms"]
    for stat in ("p50", "p95"):
        result[f"classify_{stat}_ratio_to_bare"] = result[f"api_classify_{stat}_ms"] / result[f"bare_post_{stat}_ms"]
    return result


def _outside_core(c: httpx.Client, count: int, warm: int = 10) -> dict[str, float]:
    """What the HTTP API added to each request: its round trip minus the time the same request spent
    in the core (its Server-Timing header), p50/p95. API calls only, back to back: no in-process
    call is needed to pair with, and none runs between them to load the box."""
    result: dict[str, float] = {}
    for name, path in (("classify", "/v1/classify"), ("turn", "/v1/chat")):
        added, round_trips = [], []
        for n in range(warm + count):
            started = time.perf_counter()
            response = c.post(path, json={"text": QUERIES[n % len(QUERIES)]})
            round_trip = (time.perf_counter() - started) * 1000
            if n >= warm:
                added.append(round_trip - _core_ms(response))
                round_trips.append(round_trip)
        result.update(_summary(f"{name}_outside_core", added))
        result.update(_summary(f"{name}_round_trip", round_trips))  # the same requests, whole
    return result


def measure(data_dir: Path, count: int) -> dict[str, float]:
    """Every measure, with both servers started on `data_dir` and stopped after."""
    import httpx

    from backends.offline import OfflineBackend
    from chatbot.access.api_keys import ApiKeys
    from chatbot.services import build_services

    services = build_services(Settings.load(secrets={}, data_dir=data_dir, session_ttl_days=1))
    bot = services.build_chatbot(OfflineBackend())
    # Limits high enough never to trip, but checked on every request as in production.
    _, key = ApiKeys(lambda: services.store.client).create("bench", "agent", requests_per_minute=1_000_000,
                                                           daily_tokens=10**12)
    env = {**os.environ, "CHATBOT_DATA_DIR": str(data_dir), "CHATBOT_BACKEND": "offline",
           "CHATBOT_SESSION_TTL_DAYS": "1"}
    api_port, bare_port = _free_port(), _free_port()
    api_url, bare_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{bare_port}"
    api = _start([sys.executable, "-m", "chatbot", "serve", "--port", str(api_port), "--log-level", "warning"],
                 env, f"{api_url}/health")
    bare = _start([sys.executable, "-m", "uvicorn", "bench.bare_api:app", "--port", str(bare_port),
                   "--log-level", "warning"], env, f"{bare_url}/docs")
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(base_url=api_url, headers=headers, timeout=60) as c, \
                httpx.Client(base_url=bare_url, timeout=60) as b:
            result = _latencies(c, b, services, bot, count)
            result.update(_outside_core(c, count))
        for clients in (1, 10):
            per_client = max(5, count // clients // 2)
            result[f"api_classify_rps_{clients}"] = _throughput(api_url, headers, "/v1/classify", clients, per_client)
            result[f"bare_rps_{clients}"] = _throughput(bare_url, {}, "/bare", clients, per_client)
            result[f"rps_ratio_{clients}"] = result[f"api_classify_rps_{clients}"] / result[f"bare_rps_{clients}"]
    finally:
        for process in (api, bare):
            process.terminate()
            process.wait(30)
        services.knowledge.close()
    return result


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        result = measure(Path(tmp), args.requests)
    if args.json:
        print(json.dumps({k: round(v, 3) for k, v in result.items()}))
        return 0
    print(f"{'measure':<28}{'p50 ms':>10}{'p95 ms':>10}")
    for name in ("inprocess_classify", "api_classify", "bare_post", "inprocess_turn", "api_turn",
                 "api_first_sse_byte", "bare_first_sse_byte"):
        print(f"{name:<28}{result[name + '_p50_ms']:>10.2f}{result[name + '_p95_ms']:>10.2f}")
    print("API overhead: paired (each API call minus the in-process call next to it), and outside the core "
          "(each API call minus its own Server-Timing core time, API calls alone):")
    for name in ("classify_overhead", "turn_overhead", "classify_outside_core", "turn_outside_core"):
        print(f"{name:<28}{result[name + '_p50_ms']:>10.2f}{result[name + '_p95_ms']:>10.2f}")
    print(f"p95 gap (API p95 minus in-process p95): classify {result['classify_p95_gap_ms']:.2f} ms, "
          f"turn {result['turn_p95_gap_ms']:.2f} ms")
    for clients in (1, 10):
        print(f"{clients:>2} clients: /v1/classify {result[f'api_classify_rps_{clients}']:.0f} req/s, bare "
              f"{result[f'bare_rps_{clients}']:.0f} req/s, ratio {result[f'rps_ratio_{clients}']:.3f}")
    return 0
