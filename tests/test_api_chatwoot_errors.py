"""Every refusal of Chatwoot's agent-bot webhook on the real API (uvicorn, httpx): its own `type` in the
API's error shape and a message naming the problem, so whoever sets up the integration can tell a wrong
secret from a clock that is off, a body that is not JSON, or a desk that is not configured."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
import pytest
import redis
from fastapi import FastAPI

from api import errors
from api.app import create_app
from api.webhooks_in import PATH, chatwoot_router
from tests.api_server import serving
from tests.redis_server import free_port

SECRET = "cw-errors-secret"
EVENT = {"event": "message_created", "message_type": "incoming", "content": "hi",
         "conversation": {"id": 7}, "account": {"id": 1}}


def headers(body: bytes, *, secret: str = SECRET, stamp: str | None = None, signature: str | None = None,
            delivery: str | None = "d-1") -> dict:
    stamp = str(int(time.time())) if stamp is None else stamp
    if signature is None:
        signature = "sha256=" + hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    sent = {"X-Chatwoot-Timestamp": stamp, "X-Chatwoot-Signature": signature, "Content-Type": "application/json"}
    return {**sent, "X-Chatwoot-Delivery": delivery} if delivery is not None else sent


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    from chatbot.services import build_services
    from common.settings import Settings

    services = build_services(Settings.load(secrets={}, data_dir=tmp_path_factory.mktemp("api-chatwoot-errors"),
                                            session_ttl_days=1, chatwoot_webhook_secret=SECRET))
    with serving(create_app(services)) as served:
        yield served + PATH
    services.knowledge.close()


def refusal(answer: httpx.Response) -> tuple[int, str, str]:
    error = answer.json()["error"]
    assert error["code"] == error["type"]  # the API's shape, as every other error
    return answer.status_code, error["type"], error["message"]


BODY = json.dumps(EVENT).encode()


@pytest.mark.parametrize("sent, status, kind, named", [
    (headers(BODY, signature=""), 401, "missing_signature", "X-Chatwoot-Signature is missing"),
    (headers(BODY, secret="not-the-secret"), 401, "invalid_signature", "does not match the body"),
    (headers(BODY, stamp="yesterday"), 401, "invalid_timestamp", "X-Chatwoot-Timestamp"),
    (headers(BODY, stamp=str(int(time.time()) - 3600)), 401, "stale_timestamp", "300 s away from now"),
    (headers(BODY, delivery=None), 400, "missing_delivery_id", "X-Chatwoot-Delivery is missing"),
], ids=["no-signature", "wrong-secret", "timestamp-word", "stale", "no-delivery-id"])
def test_a_refused_delivery_names_the_check_that_failed(url, sent, status, kind, named):
    got_status, got_kind, message = refusal(httpx.post(url, content=BODY, headers=sent))
    assert (got_status, got_kind) == (status, kind) and named in message


@pytest.mark.parametrize("body, kind, named", [
    (b'{"event": ', "invalid_json", "not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "invalid_json", "nested too deep"),
    (b'{"content": "caf\xe9"}', "invalid_json", "(not UTF-8 at byte 16)"),
    (b'{"account": {"id": ' + b"1" * 5000 + b"}}", "invalid_json", "(an integer over 4,300 digits)"),
    (b'["message_created"]', "invalid_event", "a JSON list, not an object"),
    (json.dumps({**EVENT, "conversation": "7"}).encode(), "invalid_event", "not in Chatwoot's shape"),
], ids=["cut-short", "deep", "latin-1", "5000-digits", "list", "conversation-string"])
def test_a_signed_body_that_is_no_chatwoot_event_is_a_400_saying_why(url, body, kind, named):
    sent = headers(body, delivery=f"odd-{hashlib.sha256(body).hexdigest()[:12]}")
    status, got_kind, message = refusal(httpx.post(url, content=body, headers=sent))
    assert (status, got_kind) == (400, kind) and named in message


MESSAGE = '{"event": "message_created", "message_type": "incoming", "content": "hi", '
STATUS = '{"event": "conversation_status_changed", "status": "resolved", '


@pytest.mark.parametrize("body, field", [
    (MESSAGE + '"conversation": {"id": 7}, "account": {"id": 1e400}}', "account.id"),  # infinity once parsed
    (STATUS + '"id": 1e400, "account": {"id": 1}}', "id"),
    (MESSAGE + '"conversation": {"id": NaN}, "account": {"id": 1}}', "conversation.id"),
    (MESSAGE + '"conversation": {"id": true}, "account": {"id": 1}}', "conversation.id"),
    (MESSAGE + '"conversation": {"id": 7.0}, "account": {"id": 1}}', "conversation.id"),
    (MESSAGE + '"conversation": {"id": 7}, "account": {"id": 1180591620717411303424}}', "account.id"),  # 2**70
    (MESSAGE + '"conversation": {"id": 7}, "account": {"id": -1}}', "account.id"),
    (MESSAGE + '"conversation": {"id": 7}, "account": {"id": "1"}}', "account.id"),
    (MESSAGE + '"conversation": {"id": 7}, "account": {"id": {"id": [1]}}}', "account.id"),
    (MESSAGE + '"conversation": {"id": 7, "status": ["open"]}, "account": {"id": 1}}', "conversation.status"),
    (MESSAGE + '"conversation": {"id": 7}, "account": [1]}', "account"),
    (MESSAGE + '"conversation": {"id": 7}, "account": {"id": 1}, "private": "no"}', "private"),
    ('{"event": "message_created", "content": 5, "conversation": {"id": 7}, "account": {"id": 1}}', "content"),
    (STATUS + '"id": 7, "messages": ["junk"]}', "messages.0"),
    (STATUS + '"id": 7, "messages": [{"account_id": false}]}', "messages.0.account_id"),
    ('{"event": ["message_created"], "content": "hi"}', "event"),
], ids=["inf-account", "inf-status-id", "nan", "bool", "float", "huge", "negative", "string", "nested", "status-list",
        "account-list", "private-word", "content-number", "message-word", "message-account-bool", "event-list"])
def test_a_field_not_of_chatwoots_types_is_refused_by_name_and_the_retry_is_not_a_duplicate(url, body, field):
    sent = headers(body.encode(), delivery=f"bad-{hashlib.sha256(body.encode()).hexdigest()[:12]}")
    first = httpx.post(url, content=body.encode(), headers=sent)
    status, kind, message = refusal(first)
    assert (status, kind) == (400, "invalid_event") and f"{field}:" in message
    assert field in first.json()["error"]["fields"]
    again = httpx.post(url, content=body.encode(), headers=sent)  # Chatwoot's retry, same delivery id
    assert refusal(again)[:2] == (400, "invalid_event")  # not `200 duplicate`: the delivery was not recorded


def test_an_event_the_desk_does_not_act_on_is_ignored_whatever_its_other_fields(url):
    body = b'{"event": "webwidget_triggered", "id": 1e400, "account": {"id": true}}'
    answer = httpx.post(url, content=body, headers=headers(body, delivery="widget-1"))
    assert (answer.status_code, answer.json()) == (200, {"status": "ignored"})


def test_a_delivery_that_fails_after_it_is_recorded_is_forgotten_so_chatwoots_retry_is_taken(redis_client,
                                                                                               monkeypatch):
    import api.webhooks_in as webhooks_in

    app = FastAPI()
    errors.install(app, lambda kind: None)
    app.include_router(chatwoot_router(lambda: SECRET, lambda: redis_client))
    queue_job, calls = webhooks_in.queue_job, []

    def fails_once(client, job):  # a fault no test input reaches, between recording the delivery and queuing
        calls.append(job)
        if len(calls) == 1:
            raise RuntimeError("unexpected")
        return queue_job(client, job)

    monkeypatch.setattr(webhooks_in, "queue_job", fails_once)
    sent = headers(BODY, delivery="fails-once")
    with serving(app) as served:
        first = httpx.post(served + PATH, content=BODY, headers=sent)
        again = httpx.post(served + PATH, content=BODY, headers=sent)
    assert refusal(first)[:2] == (500, "internal_error")
    assert (again.status_code, again.json()) == (200, {"status": "queued"})


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_webhooks_own_cap_is_413_naming_it(url, chunked):
    body = b'{"content": "' + b"a" * 2_000_000 + b'"}'  # under the API's 4 MB, over this endpoint's 1 MB
    content = (body[i:i + 65536] for i in range(0, len(body), 65536)) if chunked else body
    status, kind, message = refusal(httpx.post(url, content=content, headers=headers(body)))
    assert (status, kind) == (413, "request_too_large") and "1,000,000 bytes" in message


def test_a_desk_without_a_webhook_secret_says_so(tmp_path):
    from tests.api_server import desk_services

    services = desk_services(tmp_path)  # no CHATWOOT_WEBHOOK_SECRET
    try:
        with serving(create_app(services)) as served:
            status, kind, message = refusal(httpx.post(served + PATH, content=BODY, headers=headers(BODY)))
    finally:
        services.knowledge.close()
    assert (status, kind) == (503, "webhook_not_configured") and "CHATWOOT_WEBHOOK_SECRET" in message


def test_a_delivery_while_redis_is_down_is_a_503_chatwoot_retries():
    app = FastAPI()
    errors.install(app, lambda kind: None)
    nobody = redis.Redis(port=free_port(), socket_connect_timeout=1)  # a port no Redis listens on
    app.include_router(chatwoot_router(lambda: SECRET, lambda: nobody))
    with serving(app) as served:
        status, kind, message = refusal(httpx.post(served + PATH, content=BODY, headers=headers(BODY)))
    assert (status, kind) == (503, "queue_unavailable") and "Chatwoot will retry" in message
