"""`Server-Timing: core;dur=...` on the API's answers: the time the request spent in the chat core,
so that a client (and the API benchmark) can tell what the HTTP API itself added to that request."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from api.app import create_app
from api.timing import CoreTimer
from tests.api_server import desk_services, serving


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    services = desk_services(tmp_path_factory.mktemp("timing"))
    app = create_app(services)
    _, key = app.state.desk.keys.create("timing", "agent")
    with serving(app) as url, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                           timeout=60) as c:
        yield c
    services.knowledge.close()


def core_ms(response: httpx.Response) -> float:
    match = re.fullmatch(r"core;dur=(\d+\.\d+)", response.headers.get("Server-Timing", ""))
    assert match, f"no core timing in {dict(response.headers)}"
    return float(match.group(1))


@pytest.mark.parametrize("path, body", [
    ("/v1/chat", {"text": "How do I get a refund?"}),
    ("/v1/classify", {"text": "How do I get a refund?"}),
    ("/v1/chat/completions", {"model": "support-desk", "messages": [{"role": "user", "content": "Refunds?"}]}),
])
def test_each_answer_says_how_long_it_spent_in_the_core_within_its_round_trip(api, path, body):
    started = time.perf_counter()
    response = api.post(path, json=body)
    round_trip_ms = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.text
    assert 0 < core_ms(response) < round_trip_ms


def test_a_replayed_answer_spent_no_time_in_the_core(api):
    headers = {"Idempotency-Key": "timing-replay"}
    first = api.post("/v1/chat", json={"text": "Where is my order?"}, headers=headers)
    again = api.post("/v1/chat", json={"text": "Where is my order?"}, headers=headers)
    assert core_ms(first) > 0
    assert again.headers["Idempotent-Replayed"] == "true" and core_ms(again) == 0


def test_time_spent_on_the_apis_own_work_inside_a_span_is_taken_out():
    timer = CoreTimer()
    with timer.span():
        time.sleep(0.02)
    spent = timer.ms
    timer.exclude(5.0)
    assert spent >= 20 and timer.ms == pytest.approx(spent - 5.0)
    assert timer.header() == {"Server-Timing": f"core;dur={timer.ms:.2f}"}
