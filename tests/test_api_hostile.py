"""Hostile and odd input against the real API on uvicorn (httpx and the openai SDK): every refusal is a
typed 4xx naming the problem, nothing answers 500, and nothing is stored or run twice by mistake."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time

import httpx
import openai
import pytest

from api.app import create_app
from backends.openai_backend import OpenAIBackend
from devtools.servers.openai import OpenAIServer
from tests.api_server import serving

SECRET = "cw-hostile-secret"


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    from chatbot.services import build_services
    from common.settings import Settings

    services = build_services(Settings.load(secrets={}, data_dir=tmp_path_factory.mktemp("api-hostile"),
                                            session_ttl_days=1, chatwoot_webhook_secret=SECRET))
    app = create_app(services)
    with serving(app) as url:
        _, key = app.state.desk.keys.create("hostile", "agent", requests_per_minute=0)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            yield app, http, openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    services.knowledge.close()


def test_a_body_that_is_not_json_is_named_as_such(desk):
    _, http, _ = desk
    answer = http.post("/v1/chat", content=b'{"text": ', headers={"Content-Type": "application/json"})
    error = answer.json()["error"]
    assert answer.status_code == 422 and error["type"] == "invalid_request"
    assert "not valid JSON" in error["message"] and error["fields"] == ["body"]


def test_n_above_one_is_refused_not_silently_answered_once(desk):
    _, _, sdk = desk
    with pytest.raises(openai.UnprocessableEntityError, match=r"\bn\b"):
        sdk.chat.completions.create(model="support-desk", n=2, messages=[{"role": "user", "content": "refund?"}])


@pytest.mark.parametrize("last", [{"role": "assistant", "content": "Sure, here is how."},
                                  {"role": "tool", "content": "{}", "tool_call_id": "call_1"}])
def test_a_message_list_not_ending_with_the_customer_runs_no_turn(desk, last):
    app, _, sdk = desk
    before = app.state.desk.services.store.count()
    with pytest.raises(openai.UnprocessableEntityError, match="last message"):
        sdk.chat.completions.create(model="support-desk",
                                    messages=[{"role": "user", "content": "How do I get a refund?"}, last])
    assert app.state.desk.services.store.count() == before  # the earlier user message was not sent again


def test_a_handoff_without_a_body_uses_the_default_reason(desk):
    _, http, _ = desk
    started = http.post("/v1/chat", json={"text": "How do I get a refund?"}).json()
    answer = http.post(f"/v1/conversations/{started['conversation_id']}/handoff")
    assert answer.status_code == 200 and answer.json()["escalated"] is True


def test_a_csv_with_an_unclosed_quote_is_refused_not_merged(desk):
    _, http, _ = desk
    data = b'text,id\n"my parcel never came,1\nI want a refund,2\n'
    answer = http.post("/v1/triage/batch", files={"file": ("tickets.csv", data, "text/csv")})
    error = answer.json()["error"]
    assert answer.status_code == 422 and error["type"] == "invalid_upload"
    assert "tickets.csv" in error["message"] and "line" in error["message"]


def test_an_empty_prompt_test_message_is_refused(desk):
    app, http, _ = desk
    _, admin = app.state.desk.keys.create("hostile admin", "admin", requests_per_minute=0)
    answer = http.post("/v1/prompts/test", json={"name": "billing", "text": "  "},
                       headers={"Authorization": f"Bearer {admin}"})
    assert answer.status_code == 422 and answer.json()["error"]["type"] == "empty_message"


@pytest.mark.parametrize("stamp", ["\u00b2", "9" * 5000])
def test_a_chatwoot_timestamp_that_is_no_number_is_refused_with_401(desk, stamp):
    _, http, _ = desk
    body = json.dumps({"event": "message_created"}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    answer = http.post("/v1/integrations/chatwoot", content=body,
                       headers={"X-Chatwoot-Timestamp": stamp.encode("latin-1"), "X-Chatwoot-Signature": signature,
                                "X-Chatwoot-Delivery": f"d-{time.monotonic()}", "Content-Type": "application/json"})
    assert answer.status_code == 401 and "X-Chatwoot-Timestamp" in answer.json()["error"]["message"]


def test_an_oversized_chatwoot_body_is_refused_before_its_signature_is_checked(desk):
    _, http, _ = desk
    answer = http.post("/v1/integrations/chatwoot", content=b"x" * 5_000_000,
                       headers={"X-Chatwoot-Timestamp": str(int(time.time())), "X-Chatwoot-Signature": "sha256=0",
                                "X-Chatwoot-Delivery": "big", "Content-Type": "application/json"})
    assert answer.status_code == 413 and "bytes" in answer.json()["error"]["message"]


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/stream", {"text": "where is my parcel?"}),
    ("/v1/chat/completions", {"model": "support-desk", "stream": True,
                              "messages": [{"role": "user", "content": "where is my parcel?"}]}),
])
def test_a_replayed_stream_names_its_conversation_as_the_first_did(desk, path, body):
    _, http, _ = desk
    headers = {"Idempotency-Key": f"replay-{path}"}
    first, again = http.post(path, json=body, headers=headers), http.post(path, json=body, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true" and again.text == first.text
    assert again.headers.get("X-Conversation-Id") == first.headers["X-Conversation-Id"]


def test_an_over_long_conversation_header_is_refused_by_its_length(desk):
    _, _, sdk = desk
    with pytest.raises(openai.UnprocessableEntityError, match="X-Conversation-Id must be 1 to 200 characters"):
        sdk.chat.completions.create(model="support-desk", messages=[{"role": "user", "content": "refund?"}],
                                    extra_headers={"X-Conversation-Id": "t" * 300})


def test_json_lines_whose_text_is_no_string_are_listed_as_problems(desk):
    _, http, _ = desk
    data = b'{"text": "I want a refund"}\n{"text": {"a": 1}}\n{"text": 5}\n'
    answer = http.post("/v1/triage/batch", files={"file": ("tickets.jsonl", data, "application/x-ndjson")}).json()
    assert answer["total"] == 1 and [p["line"] for p in answer["problems"]] == [2, 3]
    assert "not a string" in answer["problems"][0]["error"]


def test_a_retry_after_a_429_runs_instead_of_replaying_the_429(desk):
    app, _, _ = desk
    services = app.state.desk.services
    with OpenAIServer("Refunds take 5 to 10 business days [1].", usage=(100, 20)) as server:
        paid = create_app(services, OpenAIBackend("gpt-4o-mini", api_key="sk-test", base_url=server.base_url,
                                                  max_retries=0))
        record, key = paid.state.desk.keys.create("tiny", "agent", requests_per_minute=0, daily_tokens=1)
        with serving(paid) as url, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                                timeout=60) as http:
            assert http.post("/v1/chat", json={"text": "How do I get a refund?"}).status_code == 200
            retried = {"Idempotency-Key": "after-the-limit"}
            refused = http.post("/v1/chat", json={"text": "and for a gift?"}, headers=retried)
            assert refused.status_code == 429 and refused.json()["error"]["limit"] == "daily_tokens"
            client = services.store.client
            for name in client.scan_iter(f"chatbot:apikey:{record.key_id}:day:*"):
                client.delete(name)  # midnight UTC: the key's tokens start again
            again = http.post("/v1/chat", json={"text": "and for a gift?"}, headers=retried)
    assert again.status_code == 200 and "Idempotent-Replayed" not in again.headers


def test_prompt_version_zero_is_refused_not_read_as_the_latest(desk):
    app, http, _ = desk
    _, admin = app.state.desk.keys.create("hostile admin 0", "admin", requests_per_minute=0)
    answer = http.post("/v1/prompts/test", json={"name": "billing", "version": 0, "text": "refund?"},
                       headers={"Authorization": f"Bearer {admin}"})
    assert answer.status_code == 422 and answer.json()["error"]["fields"] == ["version"]


@pytest.mark.parametrize("chunked", [False, True])
def test_a_huge_body_without_a_key_is_refused_before_it_is_read(desk, chunked):
    _, http, _ = desk
    body = b'{"text": "' + b"a" * 6_000_000 + b'"}'
    content = (body[i:i + 65536] for i in range(0, len(body), 65536)) if chunked else body
    answer = httpx.post(f"{http.base_url}/v1/chat", content=content, headers={"Content-Type": "application/json"})
    assert answer.status_code == 401 and answer.json()["error"]["type"] == "missing_api_key"


@pytest.mark.parametrize("path, cap", [("/v1/chat", 4_000_000), ("/v1/chat/stream", 4_000_000),
                                       ("/v1/triage/batch", 21_000_000), ("/v1/integrations/chatwoot", 1_000_000)])
@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_its_routes_cap_is_413_naming_that_cap(desk, path, cap, chunked):
    _, http, _ = desk
    body, kind = b"x" * (cap + 1), "application/json"
    if path.endswith("batch"):  # a well-formed upload, so that the form parser reads on to the cap
        body, kind = (b'--cut\r\nContent-Disposition: form-data; name="file"; filename="t.csv"\r\n\r\n' + body
                      + b"\r\n--cut--\r\n"), "multipart/form-data; boundary=cut"
    content = (body[i:i + 65536] for i in range(0, len(body), 65536)) if chunked else body
    answer = http.post(path, content=content, headers={"Content-Type": kind})
    error = answer.json()["error"]
    assert answer.status_code == 413 and error["type"] == "request_too_large"
    assert error["max_bytes"] == cap and f"over {cap:,} bytes" in error["message"]


def test_an_upload_over_the_api_cap_but_under_its_own_is_read(desk):
    _, http, _ = desk
    data = b"text\n" + b"I want a refund for my order\n" * 200_000  # 5.8 MB: over 4 MB, under the upload's 21 MB
    answer = http.post("/v1/triage/batch", files={"file": ("tickets.csv", data, "text/csv")})
    assert answer.status_code == 422 and answer.json()["error"]["type"] == "invalid_upload"  # its rows, not its size


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/stream", {"text": "where is my parcel?"}),
    ("/v1/chat/completions", {"model": "support-desk", "stream": True,
                              "messages": [{"role": "user", "content": "where is my parcel?"}]}),
])
def test_a_client_gone_before_reading_leaves_the_reply_interrupted_and_its_retry_says_so(desk, path, body):
    app, http, _ = desk
    key = http.headers["Authorization"].split()[1]
    data = json.dumps(body).encode()
    request = (f"POST {path} HTTP/1.1\r\nHost: desk\r\nAuthorization: Bearer {key}\r\n"
               f"Content-Type: application/json\r\nIdempotency-Key: gone-{path}\r\n"
               f"Content-Length: {len(data)}\r\n\r\n").encode() + data
    host, port = http.base_url.host, http.base_url.port
    store = app.state.desk.services.store
    before = store.count()
    with socket.create_connection((host, port)) as connection:
        connection.sendall(request)  # and leaves at once: the turn opens, its stream is never read
    deadline = time.monotonic() + 60
    while store.count() == before and time.monotonic() < deadline:  # the first holds the key before the retry
        time.sleep(0.02)
    retry = http.post(path, json=body, headers={"Idempotency-Key": f"gone-{path}"})
    while retry.status_code == 409 and time.monotonic() < deadline:  # the first still stores what it had
        time.sleep(int(retry.headers["Retry-After"]))
        retry = http.post(path, json=body, headers={"Idempotency-Key": f"gone-{path}"})
    assert retry.headers["Idempotent-Replayed"] == "true"
    conversation = retry.headers["X-Conversation-Id"]
    messages = app.state.desk.services.store.conversation(conversation)["messages"]
    # No piece arrived: the customer's message is marked interrupted (Send it again), not left pending.
    assert [(m.role, m.status) for m in messages] == [("user", "interrupted")]
    if path == "/v1/chat/stream":
        done = json.loads(retry.text.split("event: done\r\ndata: ")[-1].split("\r\n")[0])
        assert done["interrupted"] is True and done["stop_reason"] == "error"
    # The retry is told why the stream stopped, and the turn is counted.
    assert '"type": "client_disconnected"' in retry.text
    endpoint = "chat_stream" if path == "/v1/chat/stream" else "chat_completions"
    assert f'chatbot_turns_total{{backend="offline",endpoint="{endpoint}",outcome="interrupted"}}' in \
        http.get("/metrics").text


def signed(body: bytes, delivery: str) -> dict:
    stamp = str(int(time.time()))
    signature = "sha256=" + hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Chatwoot-Timestamp": stamp, "X-Chatwoot-Signature": signature, "X-Chatwoot-Delivery": delivery,
            "Content-Type": "application/json"}


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,
    json.dumps({"event": "message_created", "message_type": "incoming", "content": "hi", "conversation": "7"}).encode(),
    json.dumps({"event": "message_created", "message_type": "incoming", "content": ["hi"],
                "conversation": {"id": 7}, "account": {"id": 1}}).encode(),
    json.dumps({"event": "message_created", "message_type": "incoming", "content": "hi",
                "conversation": {"id": "seven"}, "account": {"id": 1}}).encode(),
], ids=["deep", "conversation-string", "content-list", "id-word"])
def test_a_signed_event_of_another_shape_is_a_400_and_its_retry_is_not_a_duplicate(desk, body):
    _, http, _ = desk
    delivery = f"odd-{hashlib.sha256(body).hexdigest()[:12]}"
    first = http.post("/v1/integrations/chatwoot", content=body, headers=signed(body, delivery))
    assert first.status_code == 400 and first.json()["error"]["message"]
    again = http.post("/v1/integrations/chatwoot", content=body, headers=signed(body, delivery))
    assert again.status_code == 400  # not {"status": "duplicate"}: the first was never taken


def test_a_json_lines_row_nested_too_deep_is_a_problem_by_line(desk):
    _, http, _ = desk
    data = b'{"text": "I want a refund"}\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n"
    answer = http.post("/v1/triage/batch", files={"file": ("tickets.jsonl", data, "application/x-ndjson")})
    assert answer.status_code == 202 and answer.json()["problems"] == [
        {"line": 2, "error": "not JSON this desk reads (nested too deep)"}]


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/stream", {"text": "hi", "conversation_id": "../../etc"}),
    ("/v1/chat/completions", {"model": "support-desk", "stream": True, "messages": [{"role": "user", "content": " "}]}),
])
def test_a_streams_refusal_replayed_is_marked_and_whole(desk, path, body):
    _, http, _ = desk
    headers = {"Idempotency-Key": f"refused-{path}"}
    first, again = http.post(path, json=body, headers=headers), http.post(path, json=body, headers=headers)
    assert first.status_code == again.status_code == 422 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"


def test_a_well_formed_conversation_id_the_desk_does_not_hold_is_not_found(desk):
    app, http, _ = desk
    answer = http.post("/v1/chat", json={"text": "hi", "conversation_id": "0123456789abcdef"})
    assert not app.state.desk.services.store.exists("0123456789abcdef")  # no stranger's thread was started
    assert answer.status_code == 404 and answer.json()["error"]["type"] == "conversation_not_found"
    assert "leave conversation_id out" in answer.json()["error"]["message"]
