"""How fast the desk acknowledges Chatwoot's webhook, and what queuing a webhook event costs a turn.

Usage: python -m bench.chatwoot_ack [--requests 300] [--json]

The desk's Chatwoot endpoint served as deployed (`python -m uvicorn api.webhooks_in:make_app
--factory`), on an embedded Redis, with signed deliveries sent by the local Chatwoot server
(devtools/servers/chatwoot.py) over keep-alive HTTP: the time from sending a delivery to its 200.
The baseline is a bare FastAPI endpoint (bench/bare_app.py) on its own uvicorn, measured in the
same run, interleaved. Goal (issue): acknowledged in under
50 ms. Then `Dispatcher.emit` (one event to one endpoint: an endpoint read, a delivery record,
an enqueue), the cost a turn pays per event.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 2), "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 2)}


@contextmanager
def uvicorn_process(target: str, env: dict[str, str], data: Path) -> Iterator[str]:
    """`python -m uvicorn TARGET` on a free port, as it is deployed; yields its base URL once it answers."""
    port = free_port()
    log = open(data / f"uvicorn-{port}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", *target.split(), "--port", str(port),
                             "--log-level", "warning"], cwd=ROOT, env={**os.environ, **env},
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                httpx.get(url + "/docs", timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None:
                    raise RuntimeError((data / f"uvicorn-{port}.log").read_text())
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def measure(requests: int, data: Path) -> dict:
    env = {"CHATBOT_DATA_DIR": str(data), "CHATWOOT_WEBHOOK_SECRET": "bench-secret"}  # for the served app
    from chatbot.webhooks.delivery import Dispatcher
    from chatbot.webhooks.registry import WebhookRegistry
    from devtools.servers.chatwoot import ChatwootServer

    ack, baseline = [], []
    with ChatwootServer(webhook_secret="bench-secret") as chatwoot, \
            uvicorn_process("api.webhooks_in:make_app --factory", env, data) as url, \
            uvicorn_process("bench.bare_app:app", env, data) as bare_url:
        chatwoot.webhook_url = url + "/v1/integrations/chatwoot"
        for n in range(requests + 20):
            event = chatwoot.event(1 + n % 50, "How do I get a refund?")
            started = time.perf_counter()
            chatwoot._http.post(bare_url + "/bare", json=event)
            bare_ms = (time.perf_counter() - started) * 1000
            delivery = chatwoot.deliver(event)
            assert delivery.body == {"status": "queued"}, delivery.body  # verified, deduplicated, enqueued
            if n >= 20:  # warm-up: connections, first imports
                ack.append(delivery.elapsed_ms)
                baseline.append(bare_ms)
    from chatbot.store.conversations import ConversationStore
    from common.settings import Settings

    client = ConversationStore.from_settings(Settings.load(data_dir=str(data))).client
    WebhookRegistry(client).add_endpoint("http://127.0.0.1:9/bench")
    dispatcher, emit = Dispatcher(client), []
    for n in range(requests):
        started = time.perf_counter()
        dispatcher.emit("message.created", {"conversation_id": f"b{n}", "content": "How do I get a refund?"})
        emit.append((time.perf_counter() - started) * 1000)
    a, b = _percentiles(ack), _percentiles(baseline)
    return {"requests": requests, "ack_ms": a, "bare_ms": b,
            "ratio_p50": round(a["p50"] / b["p50"], 2), "ratio_p95": round(a["p95"] / b["p95"], 2),
            "emit_ms": _percentiles(emit), "load": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chatwoot_ack", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as data:
        result = measure(args.requests, Path(data))
    if args.json:
        print(json.dumps(result))
        return
    print(f"Chatwoot webhook acknowledged: p50 {result['ack_ms']['p50']} ms, p95 {result['ack_ms']['p95']} ms "
          f"(bare endpoint p50 {result['bare_ms']['p50']} ms, p95 {result['bare_ms']['p95']} ms; ratio p50 "
          f"{result['ratio_p50']}, p95 {result['ratio_p95']}) over {result['requests']} deliveries")
    print(f"Dispatcher.emit, one endpoint: p50 {result['emit_ms']['p50']} ms, p95 {result['emit_ms']['p95']} ms "
          f"(load average {result['load']:.1f})")


if __name__ == "__main__":
    main()
