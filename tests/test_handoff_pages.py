"""The Handoff queue, History and Webhooks pages through AppTest, on a real embedded Redis."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from chatbot.handoff.queue import HandoffQueue
from chatbot.handoff.status import WAITING_FOR_HUMAN
from chatbot.store.conversations import ConversationStore
from chatbot.store.server import connect
from chatbot.webhooks.registry import WebhookRegistry
from tests.conftest import app_environment
from tests.webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


def turn(text: str, reply: str, **triage) -> list[dict]:
    meta = {"backend": "handoff", "triage": {"escalate": True, "state": "escalated", **triage}, "created_at": time.time()}
    return [{"role": "user", "content": text}, {"role": "assistant", "content": reply, "meta": meta}]


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    data = tmp_path_factory.mktemp("handoff-data")
    (data / "knowledge").mkdir()
    (data / "knowledge" / ".demo-seeded").write_text("seeded\n")
    with app_environment(data, CHATBOT_ADMIN_PASSWORD="pw"):
        store = ConversationStore(connect(data_dir=data / "redis"))
        queue = HandoffQueue(store)
        for sid, text in (("older", "I will sue you over this charge"), ("newer", "Get me a person right now")):
            store.append(sid, turn(text, "A member of our support team will take over.", sentiment="very_negative",
                                   priority=9, reasons=["legal threat"], newly_escalated=True))
            queue.escalate(sid, brief=f"Escalated: legal threat\nFirst message: {text}", reasons=["legal threat"],
                           sentiment="very_negative", priority=9, message=text)
            time.sleep(0.01)
        # A happier message after the escalation: it waits for a person and changes only the last triage.
        store.append("older", [{"role": "user", "content": "thanks, that is great", "status": WAITING_FOR_HUMAN,
                                "meta": {"backend": "handoff", "triage": {"escalate": True, "sentiment": "positive",
                                                                          "priority": 2, "newly_escalated": False}}}])
        queue.customer_waiting("older")
        yield store, queue
        store.client.shutdown(nosave=True)


def page(path: str, admin: bool = False) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=TIMEOUT)
    if admin:
        at.session_state["admin_since"] = time.time()
    return at.run()


def test_an_agent_claims_answers_and_closes_the_oldest_case(desk):
    store, queue = desk
    at = page("views/handoff.py")
    assert not at.exception
    assert list(at.dataframe[0].value["id"]) == ["older", "newer"]  # the longest waiting first
    assert list(at.dataframe[0].value["waiting messages"]) == [1, 0]
    assert at.selectbox(key="handoff_open").value == "older"
    badges = " ".join(m.value for m in at.markdown)  # st.badge renders as Markdown
    assert "priority 9/10 at escalation" in badges and "very negative at escalation" in badges
    assert at.button(key="handoff_claim").disabled  # no name yet
    at.text_input(key="handoff_agent").input("ana").run()
    at.button(key="handoff_claim").click().run()
    assert queue.case("older").agent == "ana" and queue.case("older").status == "claimed"
    assert any("Waiting for a person" in c.value for c in at.caption)

    other = page("views/handoff.py")  # a second agent, in another browser session
    other.text_input(key="handoff_agent").input("ben").run()
    assert any("ana is working on this conversation" in i.value for i in other.info)
    assert not [b for b in other.button if b.key == "handoff_claim"]

    at.text_area(key="handoff_reply").input("Hello, I'm Ana. I have cancelled the charge.")  # typed, then sent
    next(b for b in at.button if b.label == "Send reply").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    messages = store.messages("older")
    assert messages[-1].role == "agent" and messages[-1].content.startswith("Hello, I'm Ana")
    assert not any("Waiting for a person" in c.value for c in at.caption)  # answered now
    at.button(key="handoff_close").click().run()
    assert [c.conversation for c in queue.open_cases()] == ["newer"]
    assert store.state("older")["triage"]["state"] == "closed"


def test_history_shows_the_escalation_not_the_last_message(desk):
    at = page("views/history.py")
    table = at.dataframe[0].value
    row = table[table["id"] == "older"].iloc[0]
    assert row["sentiment"] == "very_negative" and row["priority"] == 9  # not "positive", 2
    at.selectbox(key="history_open").select("older").run()
    banner = " ".join(e.value for e in at.error)
    assert "legal threat" in banner and "sentiment very negative, priority 9/10" in banner


def test_webhook_endpoints_are_admin_only_and_test_delivery_reports_back(desk):
    agent = page("views/webhooks.py")
    assert any("Admin sign-in" in s.value for s in agent.subheader)
    at = page("views/webhooks.py", admin=True)
    with Receiver() as receiver:
        at.text_input(key="webhooks_url").input(receiver.url)
        next(b for b in at.button if b.label == "Add endpoint").click().run()
        assert not at.exception
        [endpoint] = WebhookRegistry(desk[0].client).endpoints()
        receiver.secret = endpoint.secret
        assert endpoint.url == receiver.url and at.text_input(key=f"webhooks_secret_{endpoint.id}").value == endpoint.secret
        at.button(key=f"webhooks_test_{endpoint.id}").click().run()
        assert not at.exception
    assert receiver.verified and receiver.verified[0]["type"] == "webhook.test"
    assert any("succeeded" in i.value for i in at.info)
    log = at.dataframe[0].value
    assert list(log["status"]) == ["succeeded"] and list(log["event"]) == ["webhook.test"]
    at.button(key=f"webhooks_toggle_{endpoint.id}").click().run()
    assert not WebhookRegistry(desk[0].client).endpoint(endpoint.id).enabled
