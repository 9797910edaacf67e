"""Conversations over the real API (uvicorn, httpx): the list in pages with its filters checked, one
conversation with its messages' status and its handoff case, and a handoff carrying triage's verdict."""

from __future__ import annotations

import httpx
import pytest

from api.app import create_app
from tests.api_server import desk_services, serving


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    services = desk_services(tmp_path_factory.mktemp("api-conversations"))
    app = create_app(services)
    with serving(app) as url:
        _, key = app.state.desk.keys.create("conversations", "agent", requests_per_minute=0)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            yield app, http
    services.knowledge.close()


def refused(answer: httpx.Response) -> str:
    error = answer.json()["error"]
    assert (answer.status_code, error["type"]) == (422, "invalid_request"), answer.text
    return error["message"]


def started(http: httpx.Client, text: str = "How do I get a refund?") -> str:
    answer = http.post("/v1/chat", json={"text": text})
    assert answer.status_code == 200, answer.text
    return answer.json()["conversation_id"]


def test_the_list_pages_through_every_conversation_with_its_cursor(desk):
    _, http = desk
    made = {started(http, f"Where is my parcel number {n}?") for n in range(7)}
    seen, cursor, pages = [], None, 0
    while True:
        answer = http.get("/v1/conversations", params={"limit": 3, **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert len(page["conversations"]) <= 3
        seen += [c["id"] for c in page["conversations"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert made <= set(seen) and len(seen) == len(set(seen)) and pages >= 3
    updated = [c["updated"] for c in http.get("/v1/conversations", params={"limit": 500}).json()["conversations"]]
    assert updated == sorted(updated, reverse=True)


@pytest.mark.parametrize("cursor", ["page-two", "nan:abc", "NaN:x", "inf:abc", "1e999:abc", "1717430000.5:"])
def test_a_cursor_the_list_never_gave_is_refused(desk, cursor):
    _, http = desk
    assert f"cursor: not a cursor this list gave, {cursor!r}" in refused(
        http.get("/v1/conversations", params={"cursor": cursor}))


@pytest.mark.parametrize("params, named", [
    ({"offset": 500}, ["offset"]),
    ({"page": 2, "sort": "oldest"}, ["page", "sort"]),
])
def test_an_unknown_query_parameter_is_refused_by_name(desk, params, named):
    _, http = desk
    answer = http.get("/v1/conversations", params=params)
    message = refused(answer)
    assert answer.json()["error"]["fields"] == named
    assert all(f"{name}: not a query parameter of this route" in message for name in named)
    assert "takes q, intent, escalated, limit, cursor" in message


@pytest.mark.parametrize("path", ["/v1/models", "/v1/prompts", "/v1/triage/batch/0123456789abcdef"])
def test_every_get_route_refuses_a_query_parameter_it_does_not_take(desk, path):
    app, http = desk
    _, admin = app.state.desk.keys.create("conversations admin", "admin", requests_per_minute=0)
    answer = http.get(path, params={"sort": "oldest"}, headers={"Authorization": f"Bearer {admin}"})
    assert "sort: not a query parameter of this route" in refused(answer)


def test_probes_may_add_their_own_query_parameters(desk):
    _, http = desk
    assert http.get("/health", params={"probe": "lb-1"}).status_code == 200
    assert http.get("/metrics", params={"module": "http_2xx"}).status_code == 200


def test_an_unknown_intent_is_refused_with_the_intents_there_are(desk):
    _, http = desk
    message = refused(http.get("/v1/conversations", params={"intent": "bogus"}))
    assert "intent: no intent 'bogus'; the intents are" in message
    assert "refunds" in message and "unknown" in message
    assert http.get("/v1/conversations", params={"intent": "refunds"}).status_code == 200


@pytest.mark.parametrize("limit, named", [
    ("0", "Input should be greater than or equal to 1, not '0'"),
    ("501", "Input should be less than or equal to 500, not '501'"),
    ("ten", "Input should be a valid integer, unable to parse string as an integer, not 'ten'"),
])
def test_a_limit_out_of_range_is_quoted(desk, limit, named):
    _, http = desk
    assert f"query.limit: {named}" in refused(http.get("/v1/conversations", params={"limit": limit}))


def test_a_manual_handoff_carries_the_sentiment_and_priority_triage_gave(desk):
    app, http = desk
    queue = app.state.desk.services.handoff
    events, send = [], queue.events
    queue.events = lambda kind, data: (events.append((kind, data)), send(kind, data))
    try:
        conversation = started(http, "My parcel is late again, that is annoying.")
        verdict = http.get(f"/v1/conversations/{conversation}").json()["messages"][-1]["meta"]["triage"]
        assert verdict["sentiment"] and not verdict["escalate"]  # what triage made of the customer's message
        answer = http.post(f"/v1/conversations/{conversation}/handoff", json={"reason": "VIP customer"})
        assert answer.status_code == 200 and answer.json()["escalated"] is True
    finally:
        queue.events = send
    shown = http.get(f"/v1/conversations/{conversation}").json()
    assert shown["escalation_sentiment"] == verdict["sentiment"]
    assert shown["escalation_priority"] == verdict["priority"] > 0
    case = shown["handoff_case"]
    assert (case["sentiment"], case["priority"], case["reasons"]) == (
        verdict["sentiment"], verdict["priority"], ["VIP customer"])
    escalated = [data for kind, data in events if kind == "conversation.escalated"]
    assert [(e["sentiment"], e["priority"]) for e in escalated] == [(verdict["sentiment"], verdict["priority"])]


def test_a_conversation_shows_its_messages_status_and_its_handoff_case(desk):
    app, http = desk
    conversation = started(http)
    assert http.get(f"/v1/conversations/{conversation}").json()["handoff_case"] is None
    http.post(f"/v1/conversations/{conversation}/handoff", json={"reason": "asked for a person"})
    http.post("/v1/chat", json={"text": "Hello? Anyone there?", "conversation_id": conversation})
    shown = http.get(f"/v1/conversations/{conversation}").json()
    assert shown["messages"][-1]["content"] == "Hello? Anyone there?"
    assert shown["messages"][-1]["status"] == "waiting_for_human"
    assert shown["messages"][0]["status"] == "answered"
    case = shown["handoff_case"]
    assert (case["status"], case["agent"], case["waiting"]) == ("waiting", "", 1)
    assert case["brief"] and case["reasons"] == ["asked for a person"]

    queue = app.state.desk.services.handoff
    queue.claim(conversation, "Dana")
    queue.reply(conversation, "Dana", "Hi, Dana here: I'm looking at your refund now.")
    shown = http.get(f"/v1/conversations/{conversation}").json()
    assert [m["status"] for m in shown["messages"] if m["content"] == "Hello? Anyone there?"] == ["answered"]
    assert (shown["handoff_case"]["status"], shown["handoff_case"]["agent"], shown["handoff_case"]["waiting"]) == (
        "claimed", "Dana", 0)
