"""Request bodies the API cannot take, on the real API (uvicorn, httpx): each refused with a typed 4xx
naming the field and the problem, never a 500, a vague 400 or a silent guess."""

from __future__ import annotations

import time
import typing

import httpx
import pytest
from fastapi import params
from fastapi.routing import APIRoute, iter_route_contexts

from api.app import create_app
from api.schemas import Body
from tests.api_server import serving

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    from chatbot.services import build_services
    from common.settings import Settings

    services = build_services(Settings.load(secrets={}, data_dir=tmp_path_factory.mktemp("api-inputs"),
                                            session_ttl_days=1))
    app = create_app(services)
    with serving(app) as url:
        _, key = app.state.desk.keys.create("inputs", "agent", requests_per_minute=0)
        _, admin = app.state.desk.keys.create("inputs admin", "admin", requests_per_minute=0)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            yield app, http, {"Authorization": f"Bearer {admin}"}
    services.knowledge.close()


def refused(answer: httpx.Response) -> str:
    """The message of a 422 `invalid_request`."""
    error = answer.json()["error"]
    assert (answer.status_code, error["type"]) == (422, "invalid_request"), answer.text
    return error["message"]


def started_conversation(http: httpx.Client) -> str:
    return http.post("/v1/chat", json={"text": "How do I get a refund?"}).json()["conversation_id"]


# Raw JSON text: `\ud800` is JSON's escape of a lone surrogate, which no UTF-8 text can hold.
@pytest.mark.parametrize("path, body, field", [
    ("/v1/chat", rb'{"text": "refund \ud800 please"}', "text"),
    ("/v1/chat/stream", rb'{"text": "refund \ud800 please"}', "text"),
    ("/v1/classify", rb'{"text": "refund \ud800 please"}', "text"),
    ("/v1/chat", rb'{"text": "refund", "conversation_id": "\udc00"}', "conversation_id"),
    ("/v1/chat/completions", rb'{"model": "support-desk", "messages": [{"role": "user", "content": "refund \ud800"}]}',
     "messages.0.content"),
    ("/v1/chat/completions", rb'{"model": "support-desk", "messages": [{"role": "user", '
                             rb'"content": [{"type": "text", "text": "refund \ud800"}]}]}', "messages.0.content"),
    ("/v1/chat/completions", rb'{"model": "support-desk", "user": "\ud800", '
                             rb'"messages": [{"role": "user", "content": "refund"}]}', "user"),
], ids=["chat", "stream", "classify", "conversation-id", "completions", "content-parts", "openai-extra-field"])
def test_a_lone_surrogate_is_refused_naming_its_field(desk, path, body, field):
    app, http, _ = desk
    before = app.state.desk.services.store.count()
    message = refused(http.post(path, content=body, headers=JSON))
    assert f"{field}: an unpaired surrogate \\u" in message and "is not a character" in message
    assert app.state.desk.services.store.count() == before


def test_a_lone_surrogate_in_a_handoff_reason_is_named_as_such(desk):
    _, http, _ = desk
    conversation = started_conversation(http)
    message = refused(http.post(f"/v1/conversations/{conversation}/handoff", content=rb'{"reason": "vip \ud800"}',
                                headers=JSON))
    assert "reason: an unpaired surrogate \\ud800 is not a character" in message


def test_a_lone_surrogate_in_a_prompt_test_is_refused(desk):
    _, http, admin = desk
    message = refused(http.post("/v1/prompts/test", content=rb'{"name": "billing", "text": "hi \udfff"}',
                                headers={**JSON, **admin}))
    assert "text: an unpaired surrogate \\udfff is not a character" in message


def test_a_surrogate_pair_is_one_character_and_welcome(desk):
    _, http, _ = desk
    answer = http.post("/v1/classify", content=rb'{"text": "refund please \ud83d\ude00"}', headers=JSON)
    assert answer.status_code == 200 and answer.json()["text"].endswith("\N{GRINNING FACE}")


def test_every_json_body_the_api_reads_is_checked_as_a_body(desk):
    """A route added later with a plain BaseModel would skip the check: each JSON body must be a `Body`."""
    app, _, _ = desk
    routes = [context.original_route for context in iter_route_contexts(app.routes)]
    bodies = {(route.path, param.name): param.field_info.annotation for route in routes
              if isinstance(route, APIRoute) for param in route.dependant.body_params
              if not isinstance(param.field_info, params.Form)}  # an upload's parts are no JSON
    assert len(bodies) >= 6, bodies
    for where, annotation in bodies.items():
        models = [t for t in (typing.get_args(annotation) or (annotation,)) if t is not type(None)]
        assert all(isinstance(t, type) and issubclass(t, Body) for t in models), where


@pytest.mark.parametrize("body, named", [
    (b'{"text": "caf\xe9"}', "not UTF-8 at byte 13"),
    (b"[" * 200_000 + b"]" * 200_000, "nested too deep"),
    (b'{"text": "refund", "customer_tier": ' + b"7" * 5000 + b"}", "an integer over 4,300 digits"),
], ids=["latin-1", "deep", "5000-digits"])
@pytest.mark.parametrize("path", ["/v1/chat", "/v1/chat/completions"])
def test_a_body_json_cannot_read_is_refused_saying_why(desk, path, body, named):
    _, http, _ = desk
    answer = http.post(path, content=body, headers=JSON)
    assert refused(answer) == f"The request is not valid: body: not valid JSON ({named})"
    assert answer.json()["error"]["fields"] == ["body"]


def test_a_broken_upload_form_is_refused_saying_why(desk):
    _, http, _ = desk
    answer = http.post("/v1/triage/batch", content=b"no parts", headers={"Content-Type": "multipart/form-data"})
    assert refused(answer) == "The request is not valid: body: Missing boundary in multipart."


@pytest.mark.parametrize("version, status, kind", [
    (1_000_000, 404, "prompt_not_found"),  # within the bound, never saved
    (10**6 + 1, 422, "invalid_request"),
    (10**300, 422, "invalid_request"),
])
def test_a_prompt_version_past_any_saved_is_a_typed_refusal(desk, version, status, kind):
    _, http, admin = desk
    answer = http.post("/v1/prompts/test", json={"name": "billing", "version": version, "text": "refund?"},
                       headers=admin)
    assert (answer.status_code, answer.json()["error"]["type"]) == (status, kind)
    if status == 422:
        assert answer.json()["error"]["fields"] == ["version"] and "1000000" in answer.json()["error"]["message"]


LONG = "n" * 100_000


@pytest.mark.parametrize("method, path, sent, kind", [
    ("POST", "/v1/prompts/test", {"json": {"name": LONG, "text": "refund?"}}, "prompt_not_found"),
    ("POST", "/v1/chat/completions", {"json": {"model": LONG, "messages": [{"role": "user", "content": "hi"}]}},
     "model_not_found"),
    ("POST", "/v1/chat", {"json": {"text": "hi", LONG: 1}}, "invalid_request"),
    ("GET", "/v1/" + LONG[:8000], {}, "not_found"),
    ("POST", "/v1/triage/batch", {"files": {"file": (LONG[:2000] + ".txt", b"text\nrefund\n", "text/plain")}},
     "invalid_upload"),
], ids=["prompt-name", "model", "field-name", "path", "file-name"])
def test_an_error_quotes_a_long_value_by_its_first_80_characters(desk, method, path, sent, kind):
    _, http, admin = desk
    answer = http.request(method, path, headers=admin if "prompts" in path else None, **sent)
    error = answer.json()["error"]
    assert error["type"] == kind, error["message"][:300]
    assert "n" * 70 in error["message"] and "n…" in error["message"] and "n" * 81 not in error["message"]
    assert len(answer.content) < 1000


def test_a_batch_of_two_files_is_refused_not_half_triaged(desk):
    _, http, _ = desk
    answer = http.post("/v1/triage/batch", files=[("file", ("a.csv", b"text\nI want a refund\n", "text/csv")),
                                                  ("file", ("b.jsonl", b'{"text": "where is my parcel"}\n',
                                                            "application/x-ndjson"))])
    assert "file: 2 files were sent; send one file a batch" in refused(answer)
    assert answer.json()["error"]["fields"] == ["file"]


@pytest.mark.parametrize("sent, named", [("", "Idempotency-Key is empty"),
                                         ("k" * 256, "Idempotency-Key has 256 characters; it must be 1 to 255")])
@pytest.mark.parametrize("path, body", [
    ("/v1/chat", {"text": "How do I get a refund?"}),
    ("/v1/chat/stream", {"text": "How do I get a refund?"}),
    ("/v1/chat/completions", {"model": "support-desk", "messages": [{"role": "user", "content": "refund?"}]}),
])
def test_an_idempotency_key_out_of_its_length_is_refused_and_runs_no_turn(desk, path, body, sent, named):
    app, http, _ = desk
    before = app.state.desk.services.store.count()
    answer = http.post(path, json=body, headers={"Idempotency-Key": sent})
    error = answer.json()["error"]
    assert (answer.status_code, error["type"]) == (422, "invalid_idempotency_key") and named in error["message"]
    assert app.state.desk.services.store.count() == before


def completion(**fields) -> dict:
    return {"model": "support-desk", "messages": [{"role": "user", "content": "How do I get a refund?"}], **fields}


def test_an_unknown_role_is_named_with_the_roles_accepted(desk):
    _, http, _ = desk
    message = refused(http.post("/v1/chat/completions", json=completion(
        messages=[{"role": "user", "content": "hi"}, {"role": "wizard", "content": "refund?"}])))
    assert "messages.1.role:" in message and "not 'wizard'" in message
    assert all(f"'{role}'" in message for role in ("system", "developer", "user", "assistant", "tool"))


@pytest.mark.parametrize("last", ["assistant", "tool", "system", "developer"])
def test_a_list_ending_with_another_role_says_which_in_plain_words(desk, last):
    _, http, _ = desk
    answer = http.post("/v1/chat/completions", json=completion(
        messages=[{"role": "user", "content": "hi"}, {"role": last, "content": "more"}]))
    message = refused(answer)
    assert answer.json()["error"]["fields"] == ["messages"]  # as every invalid_request names its fields
    assert message == (f"messages: the last message has the role '{last}'; it must be the customer's new "
                       "message (role 'user').")


@pytest.mark.parametrize("fields, where", [
    ({"stream": "yes"}, "stream: Input should be a valid boolean, not 'yes'"),
    ({"stream": 1}, "stream: Input should be a valid boolean, not 1"),
    ({"stream": True, "stream_options": {"include_usage": "true"}},
     "stream_options.include_usage: Input should be a valid boolean, not 'true'"),
])
def test_booleans_are_json_booleans_as_openai_takes_them(desk, fields, where):
    app, http, _ = desk
    before = app.state.desk.services.store.count()
    assert where in refused(http.post("/v1/chat/completions", json=completion(**fields)))
    assert app.state.desk.services.store.count() == before


def test_an_unknown_tier_is_quoted_short(desk):
    _, http, _ = desk
    message = refused(http.post("/v1/chat", json={"text": "hi", "customer_tier": "gold" * 1000}))
    assert "customer_tier: Input should be 'standard'" in message and ", not 'goldgold" in message
    assert "…'" in message and len(message) < 250


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/stream", {"text": "where is my parcel?"}),
    ("/v1/chat/completions", completion(stream=True)),
])
@pytest.mark.parametrize("asked, connection", [({"Connection": "close"}, ["close"]), ({}, [])])
def test_a_stream_leaves_its_connection_header_to_the_server(desk, path, body, asked, connection):
    _, http, _ = desk
    with http.stream("POST", path, json=body, headers=asked) as answer:
        text = answer.read().decode()
    assert answer.headers.get_list("connection") == connection  # never both keep-alive and close
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert "event: done" in text or "data: [DONE]" in text  # the whole stream still came


def requests_counted(http: httpx.Client, method: str, route: str, status: int) -> float:
    line = f'chatbot_api_request_seconds_count{{method="{method}",route="{route}",status="{status}"}} '
    found = [row for row in http.get("/metrics").text.splitlines() if row.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


def test_a_keys_refusals_are_counted_under_the_route_it_called(desk):
    app, http, _ = desk
    _, slow = app.state.desk.keys.create("one a minute", "agent", requests_per_minute=1)
    conversation = started_conversation(http)
    auth = {"Authorization": f"Bearer {slow}"}
    counts = [("POST", "/v1/classify", 429), ("GET", "/v1/conversations/{conversation_id}", 401),
              ("GET", "unmatched", 404)]
    before = [requests_counted(http, *labels) for labels in counts]
    assert http.post("/v1/classify", json={"text": "hi"}, headers=auth).status_code == 200
    assert http.post("/v1/classify", json={"text": "hi"}, headers=auth).status_code == 429
    assert httpx.get(f"{http.base_url}/v1/conversations/{conversation}").status_code == 401
    assert http.get("/v1/nowhere").status_code == 404
    assert [requests_counted(http, *labels) - was for labels, was in zip(counts, before)] == [1, 1, 1]


def test_a_batch_row_over_the_message_limit_is_a_result_with_an_error(desk):
    """As docs/api.md says: not a problem of the upload (it is read), a result the classifier refused."""
    _, http, _ = desk
    data = b"id,text\nshort,I want a refund\nlong," + b"a" * 4001 + b"\n"
    started = http.post("/v1/triage/batch", files={"file": ("tickets.csv", data, "text/csv")}).json()
    assert started["total"] == 2 and started["problems"] == []
    deadline = time.monotonic() + 60
    while (job := http.get(started["status_url"]).json())["status"] != "done" and time.monotonic() < deadline:
        time.sleep(0.1)
    short, long = job["results"]
    assert "error" not in short and short["intent"]["intent"] == "refunds"
    assert (long["id"], long["line"]) == ("long", 3) and "intent" not in long
    assert "4,001 characters long; the limit is 4,000" in long["error"]


def test_every_path_parameter_is_quoted_by_its_first_80_characters(desk):
    """Each route whose path takes a value from the client (an id) quotes a long one short in its error."""
    app, http, admin = desk
    routes = [context.original_route for context in iter_route_contexts(app.routes)]
    with_ids = [(method, route.path) for route in routes if isinstance(route, APIRoute) and "{" in route.path
                for method in route.methods]
    assert len(with_ids) >= 3, with_ids
    for method, template in with_ids:
        path = template.split("{")[0] + "a" * 5000 + template.split("}")[1]
        answer = http.request(method, path, headers=admin)
        message = answer.json()["error"]["message"]
        assert answer.status_code == 404 and "a" * 80 + "…" in message and "a" * 81 not in message, (method, path[:40])
        assert len(answer.content) < 1000


@pytest.mark.parametrize("method, path, allowed", [
    ("GET", "/v1/chat", "POST"),
    ("DELETE", "/v1/conversations", "GET"),
    ("PUT", "/v1/triage/batch", "POST"),
    ("PUT", "/v1/triage/batch/0123456789abcdef", "DELETE, GET"),  # two routes share the path
])
def test_a_method_the_path_does_not_take_is_named_with_the_ones_it_does(desk, method, path, allowed):
    _, http, _ = desk
    answer = http.request(method, path)
    error = answer.json()["error"]
    assert (answer.status_code, error["type"]) == (405, "method_not_allowed")
    assert answer.headers["Allow"] == allowed
    assert error["message"] == f"{method} is not allowed on {path}; use {allowed}."
