"""The Webhooks page through AppTest, on a real embedded Redis and real receivers: what an admin sees."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from chatbot.store.server import connect
from chatbot.webhooks.delivery import Dispatcher
from chatbot.webhooks.events import MESSAGE_CREATED
from chatbot.webhooks.registry import SUCCEEDED, WebhookRegistry
from tests.conftest import app_environment
from tests.rq_helpers import run_jobs
from tests.webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    data = tmp_path_factory.mktemp("webhooks-data")
    (data / "knowledge").mkdir()
    (data / "knowledge" / ".demo-seeded").write_text("seeded\n")
    with app_environment(data, CHATBOT_ADMIN_PASSWORD="pw"):
        client = connect(data_dir=data / "redis")
        yield client
        client.shutdown(nosave=True)


@pytest.fixture
def registry(client):
    registry = WebhookRegistry(client)
    for endpoint in registry.endpoints():  # each test starts with no endpoint
        registry.delete_endpoint(endpoint.id)
    return registry


def admin_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "views/webhooks.py"), default_timeout=TIMEOUT)
    at.session_state["admin_since"] = time.time()
    return at.run()


def add(at: AppTest, url: str) -> AppTest:
    at.text_input(key="webhooks_url").input(url)
    return next(b for b in at.button if b.label == "Add endpoint").click().run()


@pytest.mark.parametrize("url, reason", [
    ("http://[::1/", "Invalid IPv6 URL"),
    ("http://127.0.0.1:abc/x", "Invalid port: 'abc'"),
    ("http://127.0.0.1:8399/" + "a" * 70_000, "at most 2048 characters"),
])
def test_a_url_that_cannot_be_sent_to_is_refused_with_the_reason(url, reason, registry):
    at = add(admin_page(), url)
    assert not at.exception, [e.value for e in at.exception]
    [error] = at.error
    assert error.value.startswith("A webhook URL") and reason in error.value
    assert registry.endpoints() == []


def test_replay_is_offered_for_a_delivery_stuck_pending(client, registry):
    dispatcher = Dispatcher(client)
    with Receiver() as receiver:
        receiver.secret = registry.add_endpoint(receiver.url).secret
        [queued] = dispatcher.emit(MESSAGE_CREATED, {"conversation_id": "p1"})
        at = admin_page()
        at.selectbox(key="webhooks_delivery").select(queued.id).run()
        assert at.button(key="webhooks_replay").disabled  # queued, waiting for a worker
        registry.update_delivery(queued.id, deadline=time.time() - 1)  # its worker died mid-attempt
        at.run()
        assert not at.button(key="webhooks_replay").disabled
        at.button(key="webhooks_replay").click().run()
        assert not at.exception and any("pending (queued for the worker)" in i.value for i in at.info)
        run_jobs(client)
    assert receiver.seen == 1 and registry.delivery(queued.id).status == SUCCEEDED


def test_a_failed_test_event_shows_its_answer_and_a_disabled_endpoint_is_not_tested(client, registry):
    with Receiver(answers=[(410, {})]) as receiver:
        endpoint = registry.add_endpoint(receiver.url)
        receiver.secret = endpoint.secret
        at = admin_page()
        at.button(key=f"webhooks_test_{endpoint.id}").click().run()
        assert not at.exception
        [notice] = at.info
        assert "webhook.test" in notice.value
        assert "failed (Endpoint disabled: the receiver answered 410 Gone" in notice.value
        at.button(key=f"webhooks_test_{endpoint.id}").click().run()
        error = at.error[0]
        assert "is disabled (the receiver answered 410 Gone on" in error.value
        assert "enable it first (its Enable button), then send it a test event" in error.value
        assert receiver.seen == 1  # the second test was not sent
        at.button(key=f"webhooks_toggle_{endpoint.id}").click().run()  # "Enable"
        at.button(key=f"webhooks_test_{endpoint.id}").click().run()
        assert any("succeeded" in i.value for i in at.info) and receiver.seen == 2


def test_a_password_in_an_endpoint_url_is_never_shown(client, registry):
    with Receiver() as receiver:
        at = add(admin_page(), receiver.url.replace("http://", "http://desk:s3cret@"))
        [endpoint] = registry.endpoints()
        receiver.secret = endpoint.secret
        at.button(key=f"webhooks_test_{endpoint.id}").click().run()
        assert not at.exception and receiver.verified
    shown = receiver.url.replace("http://", "http://***@")
    assert [e.label for e in at.expander] == [f"{shown} · enabled"]
    assert any(f"to {shown}: succeeded" in i.value for i in at.info)
    assert shown in list(at.dataframe[0].value["url"])
    at.button(key=f"webhooks_delete_{endpoint.id}").click().run()  # its confirmation names it too
    texts = [e.value for kind in (at.markdown, at.caption, at.info, at.error, at.warning, at.code) for e in kind]
    texts += [e.label for e in at.expander] + [at.dataframe[0].value.to_string()]
    assert any(f"Delete the endpoint {shown}?" in t for t in texts)
    assert not [t for t in texts if "s3cret" in t]
