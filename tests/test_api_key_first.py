"""The API key is checked before the body is parsed (api/key_first.py), on the real API (uvicorn, httpx): a caller without a
valid key gets 401 whatever it sends, never the 422 that names the body's fields; a valid key with a bad
body still gets the 422; and the early check asks Redis nothing more than the key check did."""

from __future__ import annotations

import httpx
import pytest

from api.app import create_app
from api.key_first import KeyFirst
from tests.api_server import desk_services, serving

JSON = {"Content-Type": "application/json"}
BROKEN = b'{"text": '  # cut short: not JSON
# Uploads the form parser refuses with its own 400 and message: no boundary; a part without a name.
BROKEN_FORMS = [(b"anything", "multipart/form-data"),
                (b"--cut\r\nX: y\r\n\r\nabc\r\n--cut--\r\n", "multipart/form-data; boundary=cut")]
ROUTES = ["/v1/chat", "/v1/chat/stream", "/v1/classify", "/v1/chat/completions", "/v1/conversations/c0ffee/handoff",
          "/v1/prompts/test"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    services = desk_services(tmp_path_factory.mktemp("api-key-first"))
    app = create_app(services)
    with serving(app) as url:
        keys = app.state.desk.keys
        yield app, url, {role: keys.create(f"{role} key", role, requests_per_minute=0)[1] for role in ("agent", "admin")}
    services.knowledge.close()


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("given, kind", [({}, "missing_api_key"), ({"X-API-Key": "desk_not-a-key"}, "invalid_api_key"),
                                         ({"Authorization": "Bearer desk_revoked"}, "invalid_api_key")],
                         ids=["no-key", "unknown-header-key", "unknown-bearer"])
def test_a_bad_body_without_a_valid_key_is_401_not_a_422_naming_fields(served, path, given, kind):
    _, url, _ = served
    answer = httpx.post(url + path, content=BROKEN, headers={**JSON, **given})
    error = answer.json()["error"]
    assert answer.status_code == 401 and error["type"] == kind and "fields" not in error
    assert answer.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("body, content_type", BROKEN_FORMS, ids=["no-boundary", "nameless-part"])
def test_a_broken_upload_without_a_key_is_401_not_the_form_parsers_400(served, body, content_type):
    _, url, _ = served
    answer = httpx.post(url + "/v1/triage/batch", content=body, headers={"Content-Type": content_type})
    assert answer.status_code == 401 and answer.json()["error"]["type"] == "missing_api_key"


@pytest.mark.parametrize("path", ROUTES)
def test_a_valid_key_with_a_bad_body_still_gets_the_422_naming_the_body(served, path):
    _, url, keys = served
    answer = httpx.post(url + path, content=BROKEN, headers={**JSON, "Authorization": f"Bearer {keys['admin']}"})
    error = answer.json()["error"]
    assert answer.status_code == 422 and error["type"] == "invalid_request" and error["fields"] == ["body"]


def test_an_upload_without_its_file_with_a_valid_key_is_a_422_naming_the_field(served):
    _, url, keys = served
    answer = httpx.post(url + "/v1/triage/batch", data={"note": "no file"},
                        headers={"Authorization": f"Bearer {keys['agent']}"})
    assert answer.status_code == 422 and answer.json()["error"]["fields"] == ["file"]


def test_an_agent_key_on_an_admin_route_is_still_403(served):
    _, url, keys = served
    answer = httpx.post(url + "/v1/prompts/test", json={"name": "support", "text": "hi"},
                        headers={"Authorization": f"Bearer {keys['agent']}"})
    assert answer.status_code == 403 and answer.json()["error"]["type"] == "admin_only"


def test_a_route_that_does_not_exist_under_v1_is_401_without_a_key_and_the_open_ones_stay_open(served):
    _, url, keys = served
    assert httpx.post(url + "/v1/nothing-here", content=BROKEN, headers=JSON).status_code == 401
    assert httpx.get(url + "/v1/nothing-here", headers={"X-API-Key": keys["agent"]}).status_code == 404
    assert httpx.get(url + "/health").status_code == 200 and httpx.get(url + "/metrics").status_code == 200
    chatwoot = httpx.post(url + "/v1/integrations/chatwoot", content=BROKEN, headers=JSON)
    assert chatwoot.json()["error"]["type"] not in ("missing_api_key", "invalid_api_key")  # signed by Chatwoot


def test_the_early_check_asks_redis_nothing_more(served, tmp_path):
    """The same accepted request costs the same Redis commands as on an app whose key check is the
    dependency alone (the middleware removed): the dependency reuses the key checked before the body."""
    app, url, keys = served
    dependency_only = create_app(app.state.desk.services)
    dependency_only.user_middleware = [m for m in dependency_only.user_middleware if m.cls is not KeyFirst]
    client = app.state.desk.services.store.client
    _, key = app.state.desk.keys.create("counted", "agent", requests_per_minute=100)

    def commands(base: str) -> int:
        before = client.info("stats")["total_commands_processed"]
        answer = httpx.post(base + "/v1/classify", json={"text": "where is my parcel?"},
                            headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200
        return client.info("stats")["total_commands_processed"] - before - 1  # the first INFO counts itself

    with serving(dependency_only) as other:
        commands(url), commands(other)  # warm: the minute's count started, each server's connections open
        assert [commands(url) for _ in range(3)] == [commands(other) for _ in range(3)]


def test_a_caller_without_a_key_is_answered_without_waiting_for_the_body_it_announced(served):
    import socket
    from urllib.parse import urlsplit

    _, url, _ = served
    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port)) as connection:
        connection.settimeout(30)  # the body never comes: without the early answer, this read would hang
        connection.sendall(b"POST /v1/chat HTTP/1.1\r\nHost: desk\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 100\r\n\r\n")
        answer = connection.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 401") and "missing_api_key" in answer
