"""Keys, roles and limits on the real API server: hashed keys, revocation, each key's requests a
minute and tokens a day, the desk's spending limits (an OpenAI-protocol server as the backend),
and `Idempotency-Key` (a retry, a duplicate told 409 while the first runs, a key reused for another
request)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from api.app import create_app
from backends.openai_backend import OpenAIBackend
from chatbot.access.spending import Limits
from devtools.servers.openai import OpenAIServer
from tests.api_server import desk_services, serving
from tests.fakes import FakeBackend


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    services = desk_services(tmp_path_factory.mktemp("api-access"))
    yield services
    services.knowledge.close()


@pytest.fixture(scope="module")
def offline(services):
    app = create_app(services)
    with serving(app) as url:
        yield app, url


def with_key(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def test_keys_are_stored_hashed_and_revoked_keys_are_refused(offline):
    app, url = offline
    keys = app.state.desk.keys
    record, key = keys.create("help desk", "agent")
    raw = app.state.desk.services.store.client.hgetall(f"chatbot:apikey:{record.key_id}")
    assert key.encode() not in b"".join([*raw.keys(), *raw.values()])  # only the hash is kept
    with with_key(url, key) as c:
        assert c.get("/v1/models").status_code == 200
        keys.revoke(record.key_id)
        refused = c.get("/v1/models")
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "invalid_api_key"
    missing = httpx.get(f"{url}/v1/models")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    forged = key[:-4] + "AAAA"
    assert httpx.get(f"{url}/v1/models", headers={"X-API-Key": forged}).status_code == 401


def test_a_key_over_its_requests_a_minute_is_told_when_to_retry(offline):
    app, url = offline
    _, key = app.state.desk.keys.create("tight", "agent", requests_per_minute=2)
    with with_key(url, key) as c:
        assert [c.get("/v1/models").status_code for _ in range(2)] == [200, 200]
        third = c.get("/v1/models")
    assert third.status_code == 429 and int(third.headers["retry-after"]) >= 1
    assert third.json()["error"]["type"] == "key_limit_reached" and third.json()["error"]["limit"] == "requests"


def test_a_key_over_its_tokens_for_today_is_refused_turns(services):
    with OpenAIServer("Refunds take 5 to 10 business days [1].", usage=(100, 20)) as server:
        backend = OpenAIBackend("gpt-4o-mini", api_key="sk-test", base_url=server.base_url, max_retries=0)
        app = create_app(services, backend)
        app.state.desk.services.spending.limits = Limits(requests_per_minute=0, conversation_tokens=0,
                                                         daily_tokens=0)
        _, key = app.state.desk.keys.create("small", "agent", daily_tokens=50)
        with serving(app) as url, with_key(url, key) as c:
            assert c.post("/v1/chat", json={"text": "How do I get a refund?"}).status_code == 200
            over = c.post("/v1/chat", json={"text": "and how long does it take?"})
            assert over.status_code == 429 and over.json()["error"]["limit"] == "daily_tokens"
            assert c.post("/v1/classify", json={"text": "hi"}).status_code == 200  # classifying spends no tokens


def test_the_offline_backend_spends_none_of_a_keys_tokens(offline):
    app, url = offline
    record, key = app.state.desk.keys.create("offline", "agent", daily_tokens=50)
    with with_key(url, key) as c:
        answers = [c.post("/v1/chat", json={"text": "How do I get a refund?"}) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200] and answers[0].json()["backend"] == "offline"
    assert app.state.desk.keys.tokens_today(record) == 0  # as the desk's spending limits, it counts money


class PausingBackend(FakeBackend):
    """The scripted backend, each reply held until `go` is set: every turn is in flight at once."""

    def __init__(self, go: threading.Event):
        super().__init__()
        self.go, self.waiting = go, 0

    def stream(self, request):
        self.waiting += 1
        self.go.wait(30)
        yield from super().stream(request)


def test_concurrent_turns_cannot_all_slip_under_a_keys_tokens(services):
    go = threading.Event()
    backend = PausingBackend(go)
    app = create_app(services, backend)
    keys = app.state.desk.keys
    record, key = keys.create("racing", "agent", requests_per_minute=0, daily_tokens=2000)
    with serving(app) as url, with_key(url, key) as c:
        answers: list[httpx.Response] = []

        def turn():
            answers.append(c.post("/v1/chat", json={"text": "How do I get a refund?"}))

        threads = [threading.Thread(target=turn) for _ in range(12)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(answers) + backend.waiting < 12 and time.monotonic() < deadline:  # each admitted or refused
            time.sleep(0.05)
        go.set()
        for thread in threads:
            thread.join(60)
    answered = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(answered) + len(refused) == 12 and refused
    assert all(a.json()["error"]["limit"] == "daily_tokens" for a in refused)
    # Each admitted turn held its estimate first: the key's tokens are overshot by one turn at most.
    largest = max(a.json()["usage"]["input_tokens"] + a.json()["usage"]["output_tokens"] for a in answered)
    assert keys.tokens_today(record) < 2000 + largest
    assert not app.state.desk.services.store.client.hlen(f"chatbot:apikey:{record.key_id}:holds")


def test_api_turns_count_against_the_desks_spending_limits_then_fall_back(services):
    with OpenAIServer("Refunds take 5 to 10 business days [1].", usage=(1000, 200)) as server:
        backend = OpenAIBackend("gpt-4o-mini", api_key="sk-test", base_url=server.base_url, max_retries=0)
        app = create_app(services, backend)
        desk = app.state.desk
        desk.services.spending.limits = Limits(requests_per_minute=0, conversation_tokens=1500, daily_tokens=0)
        with serving(app) as url, with_key(url, desk.keys.create("metered", "agent")[1]) as c:
            first = c.post("/v1/chat", json={"text": "How do I get a refund?"}).json()
            assert first["backend"] == "openai" and first["fallback"] is None and first["usage"]["total_tokens"] == 1200
            assert desk.services.spending.conversation(first["conversation_id"])["tokens"] == 1200
            second = c.post("/v1/chat", json={"text": "thanks, and for a gift?",
                                              "conversation_id": first["conversation_id"]}).json()
            assert second["backend"] == "openai"
            third = c.post("/v1/chat", json={"text": "one more question", "conversation_id": first["conversation_id"]})
            assert third.json()["backend"] == "offline" and "tokens" in third.json()["fallback"]
            assert "chatbot_fallbacks_total{reason=\"conversation\"} 1.0" in httpx.get(f"{url}/metrics").text


def test_a_stream_its_client_leaves_counts_the_tokens_the_model_did_send(services):
    words = " ".join(f"word{n}" for n in range(40))
    with OpenAIServer(words, token_delay=0.2) as server:
        backend = OpenAIBackend("gpt-4o-mini", api_key="sk-test", base_url=server.base_url, max_retries=0)
        app = create_app(services, backend)
        desk = app.state.desk
        desk.services.spending.limits = Limits(requests_per_minute=0, conversation_tokens=0, daily_tokens=0)
        record, key = desk.keys.create("leaving", "agent")
        with serving(app) as url, with_key(url, key) as c:
            with c.stream("POST", "/v1/chat/stream", json={"text": "How do I get a refund?"}) as r:
                conversation = r.headers["x-conversation-id"]
                for line in r.iter_lines():
                    if line.startswith("event: delta"):
                        break  # and the client goes, the model still streaming
            deadline = time.monotonic() + 30
            while len(desk.services.store.conversation(conversation)["messages"]) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            metrics = c.get("/metrics").text
    reply = desk.services.store.conversation(conversation)["messages"][-1]
    assert reply.meta.interrupted and reply.content.startswith("word0")
    assert reply.meta.input_tokens > 0 and reply.meta.output_tokens > 0  # counted here: no usage arrived
    assert desk.keys.tokens_today(record) == reply.meta.input_tokens + reply.meta.output_tokens
    assert 'chatbot_turns_total{backend="openai",endpoint="chat_stream",outcome="interrupted"} 1.0' in metrics


def test_a_retried_post_returns_the_first_result_never_a_second_turn(offline):
    app, url = offline
    store = app.state.desk.services.store
    with with_key(url, app.state.desk.keys.create("retry", "agent")[1]) as c:
        body = {"text": "How do I get a refund?"}
        first = c.post("/v1/chat", json=body, headers={"Idempotency-Key": "order-1"})
        retry = c.post("/v1/chat", json=body, headers={"Idempotency-Key": "order-1"})
        assert retry.json() == first.json() and retry.headers["idempotent-replayed"] == "true"
        assert store.conversation(first.json()["conversation_id"])["turns"] == 1
        other = c.post("/v1/chat", json={"text": "something else"}, headers={"Idempotency-Key": "order-1"})
        assert other.status_code == 422 and other.json()["error"]["type"] == "idempotency_key_reused"
        with c.stream("POST", "/v1/chat/stream", json=body, headers={"Idempotency-Key": "s-1"}) as r:
            streamed = r.read().decode()
        with c.stream("POST", "/v1/chat/stream", json=body, headers={"Idempotency-Key": "s-1"}) as r:
            replayed = r.read().decode()
        assert [line for line in replayed.splitlines() if not line.startswith(":")] == \
            [line for line in streamed.splitlines() if not line.startswith(":")]
        assert len(store.search(text="How do I get a refund?", agent="api:retry")) == 2  # one per key, not four


class HeldBackend(FakeBackend):
    """The scripted backend, holding its reply until `release` is set: a model still thinking."""

    def __init__(self, replies=()):
        super().__init__(replies)
        self.asked, self.release = threading.Event(), threading.Event()

    def stream(self, request):
        self.asked.set()
        self.release.wait(120)  # bounded only so that a failing test ends
        yield from super().stream(request)


def events(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith(":")]  # pings left out


@pytest.mark.parametrize("path", ["/v1/chat", "/v1/chat/stream"])
def test_a_duplicate_sent_while_the_first_runs_is_told_409_at_once_and_its_retry_gets_the_first_answer(
        services, path):
    backend = HeldBackend(["Refunds take five business days [1]."])
    app = create_app(services, backend)
    body, headers = {"text": "refund please"}, {"Idempotency-Key": f"dup-{path}"}
    with serving(app) as url, with_key(url, app.state.desk.keys.create(f"dupes {path}", "agent")[1]) as c:
        first: list[httpx.Response] = []
        running = threading.Thread(target=lambda: first.append(c.post(path, json=body, headers=headers)))
        running.start()
        assert backend.asked.wait(60)  # the first holds the key and waits on the model
        # Answered while the first is still held: nothing waits for it (a timeout here is the old wait).
        duplicate = c.post(path, json=body, headers=headers, timeout=20)
        backend.release.set()
        running.join()
        retry = c.post(path, json=body, headers=headers)
    error = duplicate.json()["error"]
    assert duplicate.status_code == 409 and error["type"] == "idempotency_key_in_use"
    assert "still running" in error["message"] and "retry" in error["message"]
    assert duplicate.headers["retry-after"] == "1"
    assert retry.headers["idempotent-replayed"] == "true" and events(retry.text) == events(first[0].text)
    assert first[0].status_code == 200 and len(backend.requests) == 1  # one turn for the three requests


def test_a_handoff_retried_is_applied_once(offline):
    app, url = offline
    with with_key(url, app.state.desk.keys.create("handoffs", "agent")[1]) as c:
        conversation = c.post("/v1/chat", json={"text": "hello"}).json()["conversation_id"]
        first = c.post(f"/v1/conversations/{conversation}/handoff", json={}, headers={"Idempotency-Key": "h"})
        retry = c.post(f"/v1/conversations/{conversation}/handoff", json={}, headers={"Idempotency-Key": "h"})
        assert first.json() == retry.json() and not retry.json()["already"]
        notices = [m for m in c.get(f"/v1/conversations/{conversation}").json()["messages"]
                   if (m.get("meta") or {}).get("backend") == "handoff"]
        assert len(notices) == 1


def test_a_backend_error_is_typed_and_the_message_is_kept(services):
    from common.errors import BackendRateLimited

    app = create_app(services, FakeBackend([BackendRateLimited("slow down", provider="fake", retry_after=7)]))
    with serving(app) as url, with_key(url, app.state.desk.keys.create("errors", "agent")[1]) as c:
        failed = c.post("/v1/chat", json={"text": "How do I get a refund?"})
        assert failed.status_code == 429 and failed.headers["retry-after"] == "7"
        assert failed.json()["error"]["type"] == "backend_rate_limited"
        listed = c.get("/v1/conversations", params={"q": "get a refund"}).json()["conversations"]
        assert listed and listed[0]["failed"] == 1
        health = c.get("/health").json()
        assert health["status"] == "degraded" and "slow down" in health["backend"]["last_failure"]["error"]
        assert c.post("/v1/chat", json={"text": "and now?"}).status_code == 200
        assert c.get("/health").json()["backend"] == {"ok": True, "name": "fake", "model": "scripted"}


def test_a_backend_that_cannot_start_leaves_the_offline_one_answering(services):
    from dataclasses import replace

    broken = replace(services, settings=services.settings.model_copy(
        update={"backend": "openai", "openai_api_key": "", "openai_base_url": ""}))
    app = create_app(broken)
    with serving(app) as url, with_key(url, app.state.desk.keys.create("no backend", "agent")[1]) as c:
        health = c.get("/health").json()
        assert health["status"] == "degraded" and health["backend"]["answering"] == "offline"
        assert "OPENAI_API_KEY" in health["backend"]["error"]
        turn = c.post("/v1/chat", json={"text": "How do I get a refund?"}).json()
        assert turn["backend"] == "offline" and "OPENAI_API_KEY" in turn["fallback"] and turn["citations"]
        assert 'chatbot_fallbacks_total{reason="backend_unavailable"} 1.0' in c.get("/metrics").text
