"""The history and stats pages, and the feedback widget, through AppTest on a real embedded Redis."""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path

import pytest
import redis
from streamlit.testing.v1 import AppTest

from tests.conftest import app_environment

from chatbot.store.server import connect
from chatbot.store.conversations import ConversationStore
from chatbot.store.messages import Feedback
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120  # the first run loads the embedding model
DAY = 86400.0


def reply(text: str, intent: str | None = None, **triage) -> dict:
    meta = {"backend": "offline", "model": "knowledge-base", "latency_ms": 120.0, "ttft_ms": 40.0,
            "input_tokens": 300, "output_tokens": 60, "retrieved": [], "citations": []}
    if intent:
        meta["route"] = {"intent": intent, "confidence": 0.9}
    if triage:
        meta["triage"] = triage
    return {"role": "assistant", "content": text, "meta": meta}


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    """A data directory with four stored conversations; the demo knowledge base is not needed here."""
    data = tmp_path_factory.mktemp("history-data")
    (data / "knowledge").mkdir()
    (data / "knowledge" / ".demo-seeded").write_text("seeded\n")
    with app_environment(data, CHATBOT_ADMIN_PASSWORD="pw"):
        now = time.time()
        clock = [now - 40 * DAY]
        store = ConversationStore(connect(data_dir=data / "redis"), clock=lambda: clock[0])
        store.append("old1", [{"role": "user", "content": "Where is my invoice from last year?"},
                              reply("Invoices are under Billing.", "billing")])
        clock[0] = now - 2 * DAY
        store.append("refund1", [{"role": "user", "content": "How do I get a refund for my camera?"},
                                 reply("Ask within 30 days [1].", "refunds", sentiment="negative",
                                       sentiment_score=-0.4, priority=5, escalate=False)], agent="ana")
        store.append("refund1", [{"role": "user", "content": "And how long does it take?"},
                                 reply("5 to 10 business days [1].", "refunds", sentiment="neutral",
                                       sentiment_score=0.0, priority=4, escalate=False)], agent="ana")
        clock[0] = now - DAY
        store.append("human1", [{"role": "user", "content": "This is useless, get me a person"},
                                reply("A colleague will take over.", "talk_to_human", sentiment="very_negative",
                                      sentiment_score=-0.8, priority=9, escalate=True,
                                      reasons=["asked for a person"])], agent="ben")
        clock[0] = now - 3600
        store.append("camera1", [{"role": "user", "content": "camera offline again",
                                  "meta": {"error": "The model server answered 500.", "backend": "offline"}}])
        store.append("camera1", [{"role": "user", "content": "camera offline again"},
                                 reply("Restart the camera [1].")])
        store.set_feedback("refund1", 1, 1, "clear answer")
        store.set_approved("refund1", 1, True)
        store.set_feedback("human1", 1, 0)
        yield data
        store.client.shutdown(nosave=True)  # the embedded server the pages shared


def page(path: str, admin: bool = False) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=TIMEOUT)
    if admin:
        at.session_state["admin_since"] = time.time()  # signed in (sign-in itself: test_roles_pages.py)
    return at.run()


def bubble(message) -> str:
    """A chat bubble's text as shown: the customer's as plain text, the assistant's as Markdown."""
    return message.text[0].value if message.name == "user" else message.markdown[0].value


def table_ids(at: AppTest) -> list[str]:
    return list(at.dataframe[0].value["id"])


def test_history_lists_the_conversations_most_recent_first(app_env):
    at = page("views/history.py")
    assert not at.exception
    assert at.title[0].value == "Conversation history"
    assert table_ids(at) == ["camera1", "human1", "refund1", "old1"]
    assert at.selectbox(key="history_open").value == "camera1"
    assert at.query_params["open"] == "camera1"


@pytest.mark.parametrize("setting, value, expected", [
    ("history_text", "BUSINESS DAYS", ["refund1"]),
    ("history_intent", "talk_to_human", ["human1"]),
    ("history_escalation", "Escalated", ["human1"]),
    ("history_escalation", "Not escalated", ["camera1", "refund1", "old1"]),
    ("history_agent", "ana", ["refund1"]),
])
def test_history_filters(app_env, setting, value, expected):
    at = page("views/history.py")
    widget = at.text_input(key=setting) if setting == "history_text" else at.selectbox(key=setting)
    (widget.input(value) if setting == "history_text" else widget.select(value)).run()
    assert not at.exception
    assert table_ids(at) == expected


def test_history_filters_by_start_date(app_env):
    at = page("views/history.py")
    at.date_input(key="history_dates").set_value((date.today() - timedelta(days=3), date.today())).run()
    assert not at.exception
    assert table_ids(at) == ["camera1", "human1", "refund1"]
    at.text_input(key="history_text").input("no such words anywhere").run()
    assert any("No conversation matches" in i.value for i in at.info)


def test_history_opens_a_conversation_read_only_with_feedback_and_exports(app_env):
    at = page("views/history.py", admin=True)
    at.selectbox(key="history_open").select("refund1").run()
    assert not at.exception
    bubbles = [bubble(m) for m in at.chat_message]
    assert bubbles == ["How do I get a refund for my camera?", "Ask within 30 days [1].",
                       "And how long does it take?", "5 to 10 business days [1]."]
    assert not at.chat_input, "a read-only view has no message box"
    notes = [c.value for c in at.caption]
    assert any("helpful" in n and "clear answer" in n and "approved for training" in n for n in notes)
    assert any("agent ana" in n and "refunds ×2" in n for n in notes)
    assert {b.label for b in at.get("download_button")} == {"Export JSON", "Export Markdown", "Export CSV",
                                                          "Export list CSV"}
    at.selectbox(key="history_open").select("human1").run()
    assert any("asked for a person" in e.value for e in at.error)


def test_history_shows_a_failed_turn(app_env):
    at = page("views/history.py")
    assert at.selectbox(key="history_open").value == "camera1"
    assert any("model server answered 500" in e.value for e in at.error)


def test_history_resume_opens_the_conversation_in_the_chat(app_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    at.switch_page("views/history.py").run()
    at.selectbox(key="history_open").select("refund1").run()
    at.button(key="history_resume").click().run()
    assert not at.exception
    assert at.title[0].value == "Support chat"
    assert at.query_params["c"] == "refund1"
    assert at.session_state["session_id"] == "refund1"
    contents = [bubble(m) for m in at.chat_message]
    assert contents[:2] == ["How do I get a refund for my camera?", "Ask within 30 days [1]."]


def test_history_delete_asks_first_then_removes_it(app_env):
    store = ConversationStore(connect(data_dir=app_env / "redis"))
    store.append("doomed", [{"role": "user", "content": "delete me"}, reply("ok")])
    at = page("views/history.py", admin=True)
    assert at.selectbox(key="history_open").value == "doomed"
    at.button(key="history_delete").click().run()
    assert any("for good?" in w.value for w in at.warning)
    at.button(key="history_delete_cancel").click().run()
    assert store.exists("doomed")
    at.button(key="history_delete").click().run()
    at.button(key="history_delete_confirm").click().run()
    assert not at.exception
    assert not store.exists("doomed")
    assert "doomed" not in table_ids(at)


def test_history_shows_the_customer_text_exactly_as_typed(app_env):
    store = ConversationStore(connect(data_dir=app_env / "redis"))
    typed = "# x\n__class__ -- *not bold*"
    store.append("markup1", [{"role": "user", "content": typed}, reply("**Bold** is fine here.")])
    try:
        at = page("views/history.py")
        assert at.selectbox(key="history_open").value == "markup1"
        customer, assistant = at.chat_message
        assert [t.value for t in customer.text] == [typed]
        assert not any("__class__" in md.value for md in customer.markdown)
        assert assistant.markdown[0].value == "**Bold** is fine here." and not assistant.text
    finally:
        store.delete("markup1")


def test_history_and_stats_say_when_the_store_is_down(app_env):
    from ui.services import get_services

    page("views/history.py")  # builds the shared services
    store = get_services().store
    working, revive = store.client, store._reconnect
    # A shared server that is down: nothing to restart, unlike the embedded one.
    store.client, store._reconnect = redis.Redis(port=free_port(), socket_connect_timeout=1), None
    try:
        for path in ("views/history.py", "views/stats.py"):
            at = page(path)
            assert not at.exception
            assert any("cannot be reached" in e.value for e in at.error)
    finally:
        store.client, store._reconnect = working, revive


def test_stats_page_charts_the_period(app_env):
    at = page("views/stats.py")
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Conversations"] == "3"  # the 40-day-old one is outside the last 30 days
    assert metrics["Turns"] == "4"
    assert metrics["Escalation rate"] == "33%"
    assert metrics["Feedback score"] == "50%"
    assert metrics["Reply p95"] == "120 ms" and metrics["First token p95"] == "40 ms"
    assert (metrics["Thumbs up"], metrics["Thumbs down"], metrics["Approved for training"]) == ("1", "1", "1")
    titles = [s.value for s in at.subheader]
    assert titles[:6] == ["Volume", "Intent mix", "Escalations", "Sentiment", "Latency", "Tokens per backend"]
    charts = [c.proto.spec for c in at.get("vega_lite_chart")]
    assert len(charts) == 7
    for chart, field in zip(charts, ["day", "intent", "reason", "mean_score", "sentiment", "ms", "backend"]):
        assert f'"{field}"' in chart, (field, chart[:300])
    at.selectbox(key="stats_period").select("All time").run()
    assert {m.label: m.value for m in at.metric}["Conversations"] == "4"
    at.selectbox(key="stats_period").select("Last 24 hours").run()
    assert {m.label: m.value for m in at.metric}["Conversations"] == "1"


def feedback_script(data_dir: str) -> None:
    from pathlib import Path

    from chatbot.store.server import connect
    from chatbot.store.conversations import ConversationStore
    from ui.feedback import render_feedback

    store = ConversationStore(connect(data_dir=Path(data_dir) / "redis"))
    for index, message in enumerate(store.messages("widget")):
        if message.role == "assistant":
            render_feedback(store, "widget", index, message)


def test_feedback_widget_stores_thumbs_comment_and_approval(app_env):
    store = ConversationStore(connect(data_dir=app_env / "redis"))
    store.append("widget", [{"role": "user", "content": "hi"}, reply("hello")])
    at = AppTest.from_function(feedback_script, args=(str(app_env),), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert not at.text_input, "the comment box appears once the reply is rated"
    at.feedback[0].set_value(0).run()
    assert store.messages("widget")[1].feedback.score == 0
    at.text_input[0].input("wrong article").run()
    assert store.messages("widget")[1].feedback == Feedback(
        score=0, comment="wrong article", at=store.messages("widget")[1].feedback.at)
    at.toggle[0].set_value(True).run()
    assert store.messages("widget")[1].approved is True
    # A new browser session starts from what was saved.
    again = AppTest.from_function(feedback_script, args=(str(app_env),), default_timeout=TIMEOUT).run()
    assert again.feedback[0].value == 0 and again.toggle[0].value is True
    assert again.text_input[0].value == "wrong article"
    at.feedback[0].set_value(None).run()
    at.toggle[0].set_value(False).run()
    message = store.messages("widget")[1]
    assert message.feedback.score is None and not message.approved
