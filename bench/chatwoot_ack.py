"""How fast the desk acknowledges Chatwoot's webhook, and what queuing a webhook event costs a turn.

Usage: python -m bench.chatwoot_ack [--requests 300] [--json]

The desk's Chatwoot endpoint on real uvicorn, on an embedded Redis, with signed deliveries sent
by the local Chatwoot server (devtools/servers/chatwoot.py) over keep-alive HTTP: the time from
sending a delivery to its 200. The baseline is a bare FastAPI endpoint in the same app that reads
the body and answers, measured in the same run, interleaved. Goal (issue): acknowledged in under
50 ms. Then `Dispatcher.emit` (one event to one endpoint: an endpoint read, a delivery record,
an enqueue), the cost a turn pays per event.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from fastapi import Request


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 2), "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 2)}


def measure(requests: int, data: Path) -> dict:
    os.environ.update({"CHATBOT_DATA_DIR": str(data), "CHATWOOT_WEBHOOK_SECRET": "bench-secret"})
    from api.webhooks_in import PATH, make_app
    from chatbot.webhooks.delivery import Dispatcher
    from chatbot.webhooks.registry import WebhookRegistry
    from devtools.servers.chatwoot import ChatwootServer
    from tests.uvicorn_server import serving

    app = make_app()

    @app.post("/bare")
    async def bare(request: Request) -> dict:
        await request.body()
        return {"status": "ok"}

    ack, baseline = [], []
    with ChatwootServer(webhook_secret="bench-secret") as chatwoot, serving(app) as url:
        chatwoot.webhook_url = url + PATH
        for n in range(requests + 20):
            event = chatwoot.event(1 + n % 50, "How do I get a refund?")
            started = time.perf_counter()
            chatwoot._http.post(url + "/bare", json=event)
            bare_ms = (time.perf_counter() - started) * 1000
            delivery = chatwoot.deliver(event)
            assert delivery.body == {"status": "queued"}, delivery.body  # verified, deduplicated, enqueued
            if n >= 20:  # warm-up: connections, first imports
                ack.append(delivery.elapsed_ms)
                baseline.append(bare_ms)
    from chatbot.store.conversations import ConversationStore
    from common.settings import Settings

    client = ConversationStore.from_settings(Settings.load()).client
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
