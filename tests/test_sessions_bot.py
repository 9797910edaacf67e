"""Conversations through the Chatbot on real Redis: replicas, concurrent turns, a server going away."""

from __future__ import annotations

import threading

import pytest

from chatbot.turn.bot import Chatbot
from common.errors import StoreUnavailable
from chatbot.store.server import connect
from chatbot.store.conversations import ConversationStore
from tests.fakes import FakeBackend
from tests.redis_server import RedisServer, require_redis_server
from tests.test_store import PASSWORDS, REFUNDS


@pytest.fixture
def small_kb(kb):
    kb.ingest_upload("refunds.md", REFUNDS)
    kb.ingest_upload("passwords.md", PASSWORDS)
    return kb


@pytest.fixture
def server(tmp_path):
    require_redis_server()
    with RedisServer(tmp_path / "redis") as running:
        yield running


def bot_on(kb, store, replies=(), **backend_options) -> Chatbot:
    return Chatbot(knowledge=kb, backend=FakeBackend(replies, **backend_options), store=store)


def test_two_replicas_on_one_redis_see_the_same_conversation(small_kb, server):
    # Two app replicas: each its own client and Chatbot, one shared server.
    first = bot_on(small_kb, ConversationStore(connect(server.url)), ["Within 30 days [1]."])
    second = bot_on(small_kb, ConversationStore(connect(server.url)), ["Use the reset link [1]."])
    first.ask("shared", "How do I get a refund?")
    second.ask("shared", "And my password?")
    for replica in (first, second):
        assert [m.content for m in replica.store.messages("shared")] == [
            "How do I get a refund?", "Within 30 days [1].", "And my password?", "Use the reset link [1].",
        ]
    # The second replica answered with the first one's turn in its context.
    assert [m["content"] for m in second.backend.requests[0].messages] == [
        "How do I get a refund?", "Within 30 days [1].", "And my password?",
    ]
    assert second.store.recent() == ["shared"]


def test_two_chatbots_in_one_process_share_the_embedded_store(small_kb, tmp_path):
    a = bot_on(small_kb, ConversationStore(connect(data_dir=tmp_path)), ["one"])
    b = bot_on(small_kb, ConversationStore(connect(data_dir=tmp_path)), ["two"])
    a.ask("c", "hello")
    b.ask("c", "again")
    assert [m.content for m in a.store.messages("c")] == ["hello", "one", "again", "two"]
    a.store.client.shutdown(save=True)


def test_concurrent_turns_on_one_conversation_lose_no_message(small_kb, store):
    threads_n, turns = 4, 5
    # Extractive summaries, so that every queued reply answers a customer message.
    bot = bot_on(small_kb, store, [f"reply {n}" for n in range(threads_n * turns)], can_summarise=False)
    errors: list[Exception] = []

    def chat(t: int) -> None:
        try:
            for n in range(turns):
                bot.ask("busy", f"thread {t} question {n}")
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=chat, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    messages = store.messages("busy")
    assert len(messages) == 2 * threads_n * turns
    assert [m.role for m in messages] == ["user", "assistant"] * threads_n * turns
    for t in range(threads_n):
        asked = [m.content for m in messages if m.content.startswith(f"thread {t} ")]
        assert asked == [f"thread {t} question {n}" for n in range(turns)]
    assert sorted(m.content for m in messages if m.role == "assistant") == sorted(
        f"reply {n}" for n in range(threads_n * turns))


def test_redis_going_away_mid_conversation(small_kb, server):
    bot = bot_on(small_kb, ConversationStore(connect(server.url)), ["First answer [1].", "Second answer [1]."])
    bot.ask("c", "How do I get a refund?")

    # The server dies between sending a message and saving its reply: the message was stored when
    # it was sent; the reply streams, saving it fails, and the text stays on the Reply for the page.
    reply = bot.send("c", "How long does it take?")
    server.stop()
    with pytest.raises(StoreUnavailable):
        reply.consume()
    assert reply.text == "Second answer [1]." and reply.user_text == "How long does it take?"

    # While it is down, a new turn is refused up front with the same typed error.
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        bot.send("c", "Hello?")

    server.start()
    stored = bot.store.messages("c")
    assert [m.content for m in stored] == ["How do I get a refund?", "First answer [1].", "How long does it take?"]
    assert stored[-1].status == "pending"  # its reply was never saved; it reads as interrupted in time
    bot.backend.replies.append("Back again [1].")
    bot.ask("c", "How long does it take?")
    assert [m.content for m in bot.store.messages("c")][-2:] == ["How long does it take?", "Back again [1]."]
    assert [m["content"] for m in bot.backend.requests[-1].messages][:2] == [
        "How do I get a refund?", "First answer [1].",
    ]
