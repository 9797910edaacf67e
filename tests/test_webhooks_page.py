"""The Webhooks page through AppTest, on a real embedded Redis and real receivers: what an admin sees."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from chatbot.store.server import connect
from chatbot.webhooks.registry import WebhookRegistry
from tests.conftest import app_environment

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
