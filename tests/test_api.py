"""The HTTP API on a real uvicorn server with real HTTP clients (httpx): every endpoint, on the
offline backend and the scripted one, with the embedded Redis and Chroma and the demo articles."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from api.app import create_app
from tests.api_server import desk_services, serving
from tests.fakes import FakeBackend


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    services = desk_services(tmp_path_factory.mktemp("api"))
    yield services
    services.knowledge.close()


@pytest.fixture(scope="module")
def offline(services):
    """The API on the offline backend: (app, base URL)."""
    app = create_app(services)
    with serving(app) as url:
        yield app, url


def client(app, url: str, role: str = "agent", **limits) -> httpx.Client:
    _, key = app.state.desk.keys.create(f"test {role}", role, **limits)
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def sse(text: str) -> list[dict]:
    """Server-sent events as {"id", "event", "data", "comment"} dicts, in order."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        event: dict = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                event["comment"] = line[1:].strip()
            elif line:
                name, _, value = line.partition(":")
                event[name] = value[1:] if value.startswith(" ") else value
        if event:
            events.append(event)
    return events


def test_a_turn_answers_with_intent_triage_citations_prompt_and_usage(offline):
    app, url = offline
    with client(app, url) as c:
        answer = c.post("/v1/chat", json={"text": "How do I get a refund?"})
        assert answer.status_code == 200, answer.text
        turn = answer.json()
        assert turn["intent"]["intent"] == "refunds" and turn["intent"]["scores"][0][0] == "refunds"
        assert turn["triage"]["sentiment"] and turn["triage"]["priority"] >= 1 and not turn["handed_off"]
        assert turn["citations"] and "refund" in turn["citations"][0]["title"].lower()
        assert turn["prompt"]["version"] >= 1 and turn["prompt"]["hash"]
        assert turn["usage"]["total_tokens"] > 0 and turn["outcome"] == "answer" and turn["backend"] == "offline"
        stored = c.get(f"/v1/conversations/{turn['conversation_id']}").json()
        assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
        assert stored["messages"][1]["content"] == turn["reply"]
        again = c.post("/v1/chat", json={"text": "and how long does it take?",
                                         "conversation_id": turn["conversation_id"]}).json()
        assert again["conversation_id"] == turn["conversation_id"]
        assert len(c.get(f"/v1/conversations/{turn['conversation_id']}").json()["messages"]) == 4


def test_errors_are_typed_json_with_a_clear_message(offline):
    app, url = offline
    with client(app, url) as c:
        missing = c.post("/v1/chat", json={"conversation_id": None})
        assert missing.status_code == 422
        assert missing.json()["error"]["type"] == "invalid_request" and "text" in missing.json()["error"]["message"]
        empty = c.post("/v1/chat", json={"text": "   "})
        assert empty.status_code == 422 and empty.json()["error"]["type"] == "empty_message"
        too_long = c.post("/v1/chat", json={"text": "refund " * 2000})
        assert too_long.status_code == 422 and too_long.json()["error"]["type"] == "input_rejected"
        bad_id = c.post("/v1/chat", json={"text": "hi", "conversation_id": "../../etc"})
        assert bad_id.status_code == 422 and bad_id.json()["error"]["type"] == "invalid_conversation_id"
        unknown = c.get("/v1/conversations/0123456789abcdef")
        assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "conversation_not_found"
        assert c.get("/v1/nothing").json()["error"]["type"] == "not_found"


def test_the_stream_numbers_its_events_and_ends_with_usage_and_the_stop_reason(offline):
    app, url = offline
    with client(app, url) as c, c.stream("POST", "/v1/chat/stream", json={"text": "where is my parcel"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [e for e in sse(r.read().decode()) if "event" in e]
    names = [e["event"] for e in events]
    assert names[0] == "meta" and names[-1] == "done" and set(names[1:-1]) == {"delta"}
    assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))
    done = json.loads(events[-1]["data"])
    assert "".join(json.loads(e["data"])["text"] for e in events[1:-1]) == done["reply"]
    assert done["usage"]["output_tokens"] > 0 and done["stop_reason"] == "end_turn"
    assert json.loads(events[0]["data"])["intent"]["intent"] == "shipping_orders"


class SlowBackend(FakeBackend):
    """The scripted backend, pausing before each piece (a model that takes its time)."""

    def __init__(self, replies=(), pause: float = 0.3, **kwargs):
        super().__init__(replies, **kwargs)
        self.pause = pause

    def stream(self, request):
        for piece in super().stream(request):
            time.sleep(self.pause)
            yield piece


def test_a_stream_that_fails_sends_an_error_event_then_the_terminal_event(services):
    app = create_app(services, FakeBackend(["Refunds take five business days [1]."], fail_after_pieces=2))
    with serving(app) as url, client(app, url) as c:
        with c.stream("POST", "/v1/chat/stream", json={"text": "How do I get a refund?"}) as r:
            events = [e for e in sse(r.read().decode()) if "event" in e]
        assert [e["event"] for e in events] == ["meta", "delta", "delta", "error", "done"]
        assert json.loads(events[3]["data"])["type"] == "backend_error"
        done = json.loads(events[-1]["data"])
        assert done["interrupted"] and done["error"] and done["reply"] == "Refunds take "
        stored = c.get(f"/v1/conversations/{done['conversation_id']}").json()["messages"]
        assert stored[-1]["meta"]["interrupted"]  # what arrived is kept, marked interrupted


def test_a_quiet_stream_is_kept_alive_with_pings(services):
    app = create_app(services, SlowBackend(["One two three."], pause=0.5))
    app.state.desk.ping_seconds = 0.2
    with serving(app) as url, client(app, url) as c:
        with c.stream("POST", "/v1/chat/stream", json={"text": "hello there"}) as r:
            events = sse(r.read().decode())
    assert any(e.get("comment", "").startswith("ping") for e in events)
    assert [e["event"] for e in events if "event" in e][-1] == "done"


def test_classify_gives_intent_scores_sentiment_priority_and_escalation_and_stores_nothing(offline):
    app, url = offline
    store = app.state.desk.services.store
    before = store.count()
    with client(app, url) as c:
        found = c.post("/v1/classify", json={"text": "This is useless, I want to talk to a human agent now!"}).json()
    assert found["intent"]["intent"] == "talk_to_human" and len(found["intent"]["scores"]) > 1
    assert found["sentiment"]["level"] in ("negative", "very_negative")
    assert found["escalation"]["escalate"] and "human requested" in found["escalation"]["reasons"]
    assert 1 <= found["priority"] <= 10 and "reply" not in found
    assert store.count() == before


def test_conversations_are_listed_read_and_handed_to_a_person(offline):
    app, url = offline
    with client(app, url) as c:
        turn = c.post("/v1/chat", json={"text": "my camera stopped recording clips"}).json()
        listed = c.get("/v1/conversations", params={"q": "camera stopped"}).json()["conversations"]
        assert turn["conversation_id"] in [s["id"] for s in listed]
        handed = c.post(f"/v1/conversations/{turn['conversation_id']}/handoff", json={"reason": "VIP customer"})
        assert handed.status_code == 200 and handed.json()["escalated"] and not handed.json()["already"]
        stored = c.get(f"/v1/conversations/{turn['conversation_id']}").json()
        assert stored["escalated"] and stored["state"]["triage"]["escalated"]
        assert stored["messages"][-1]["meta"]["backend"] == "handoff"
        later = c.post("/v1/chat", json={"text": "hello?", "conversation_id": turn["conversation_id"]}).json()
        assert later["handed_off"] and later["reply"] == ""  # the bot drafts no more replies
        escalated = c.get("/v1/conversations", params={"escalated": True}).json()["conversations"]
        assert turn["conversation_id"] in [s["id"] for s in escalated]
        again = c.post(f"/v1/conversations/{turn['conversation_id']}/handoff", json={})
        assert again.json()["already"]
        missing = c.post("/v1/conversations/0123456789abcdef/handoff", json={})
        assert missing.status_code == 404


def test_prompts_are_for_admin_keys(offline):
    app, url = offline
    with client(app, url, "agent") as agent, client(app, url, "admin") as admin:
        refused = agent.get("/v1/prompts")
        assert refused.status_code == 403 and refused.json()["error"]["type"] == "admin_only"
        names = [p["name"] for p in admin.get("/v1/prompts").json()["prompts"]]
        assert "general" in names and "billing" in names
        tested = admin.post("/v1/prompts/test", json={"name": "billing", "text": "I was charged twice"}).json()
        assert tested["reply"] and tested["prompt"]["name"] == "billing" and tested["prompt"]["system"]
        assert admin.post("/v1/prompts/test", json={"name": "nope", "text": "hi"}).status_code == 404


def wait_for_job(c: httpx.Client, status_url: str) -> dict:
    for _ in range(600):  # a bound so a broken job fails the test instead of hanging it
        job = c.get(status_url).json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"the batch job did not finish: {job}")


def test_a_csv_and_a_jsonl_file_are_triaged_in_batch_with_progress(offline):
    app, url = offline
    csv_text = 'id,text,tier\nA1,"How do I get a refund?",standard\nA2,,standard\nA3,i want a human now,vip\n'
    jsonl = '{"id": "J1", "text": "where is my parcel"}\nnot json\n{"text": "reset my password"}\n'
    with client(app, url) as c:
        started = c.post("/v1/triage/batch", files={"file": ("tickets.csv", csv_text, "text/csv")})
        assert started.status_code == 202, started.text
        assert started.json()["total"] == 2 and started.json()["problems"] == [{"line": 3, "error": "no text"}]
        job = wait_for_job(c, started.json()["status_url"])
        assert job["status"] == "done" and job["done"] == job["total"] == 2 and job["progress"] == 1.0
        by_id = {r["id"]: r for r in job["results"]}
        assert by_id["A1"]["intent"]["intent"] == "refunds"
        assert by_id["A3"]["escalation"]["escalate"]
        lines = c.post("/v1/triage/batch", files={"file": ("tickets.jsonl", jsonl, "application/x-ndjson")}).json()
        assert lines["problems"][0]["line"] == 2 and "not JSON" in lines["problems"][0]["error"]
        job = wait_for_job(c, lines["status_url"])
        assert [r["intent"]["intent"] for r in job["results"]] == ["shipping_orders", "account_access"]
        refused = c.post("/v1/triage/batch", files={"file": ("notes.txt", "hello", "text/plain")})
        assert refused.status_code == 422 and "csv" in refused.json()["error"]["message"]
        huge = c.post("/v1/triage/batch", files={"file": ("big.csv", b"text\n" + b"x" * 20_000_001, "text/csv")})
        assert huge.status_code == 413 and huge.json()["error"]["type"] == "upload_too_large"
    with client(app, url) as other:
        assert other.get(started.json()["status_url"]).status_code == 404  # another key's job


def test_health_reports_each_part_and_metrics_count_turns_and_errors(offline):
    app, url = offline
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok"
    assert health["store"]["ok"] and health["vector_store"]["ok"] and health["vector_store"]["chunks"] > 0
    assert health["backend"] == {"ok": True, "name": "offline", "model": "knowledge-base"}
    with client(app, url) as c:
        c.post("/v1/chat", json={"text": "do you ship to canada"})
    httpx.post(f"{url}/v1/chat", json={"text": "hi"})  # no key: an error counted by its kind
    metrics = httpx.get(f"{url}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'chatbot_turns_total{backend="offline",endpoint="chat",outcome="answer"}' in text
    for name in ("chatbot_turn_seconds_bucket", "chatbot_time_to_first_token_seconds_bucket",
                 'chatbot_tokens_total{backend="offline",direction="output"}',
                 'chatbot_api_errors_total{kind="missing_api_key"}', "chatbot_api_request_seconds_bucket",
                 "chatbot_fallbacks_total"):
        assert name in text, name
