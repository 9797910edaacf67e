"""A whole chat turn through each fault of the stores: the customer's message is kept, the page says why.

The conversation store is a real redis-server made to answer each fault for real: killed (the
connection is lost), paused for writes past the client's timeout (CLIENT PAUSE), out of memory
(CONFIG SET maxmemory 1), a read-only replica (REPLICAOF a master that is not there). The vector
store is changed, and held busy, by a real second process. BENCHMARKS.md ("Fault injection")
lists these runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from streamlit.testing.v1 import AppTest

from tests.conftest import app_environment, bubble_text
from tests.redis_server import RedisServer, free_port, require_redis_server

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180  # the first run loads the embedding model and seeds the demo knowledge base
MESSAGE = "My thermostat shows error E4 and the heating will not start"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_redis_server()
    with RedisServer(tmp_path_factory.mktemp("redis")) as running:
        yield running


@pytest.fixture(scope="module")
def app_env(tmp_path_factory, server):
    # A short socket timeout (in the URL, as a deployment may set it) keeps the timeout case quick.
    with app_environment(tmp_path_factory.mktemp("store-faults"), CHATBOT_ADMIN_PASSWORD="pw",
                         REDIS_URL=f"{server.url}?socket_timeout=0.5") as data:
        yield data


def admin(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port, socket_timeout=10)


def lose_connection(server):
    server.stop(hard=True)
    return server.start


def pause_writes(server):
    admin(server).execute_command("CLIENT", "PAUSE", 120_000, "WRITE")
    return lambda: admin(server).execute_command("CLIENT", "UNPAUSE")


def fill_memory(server):
    admin(server).config_set("maxmemory", 1)
    return lambda: admin(server).config_set("maxmemory", 0)


def become_replica(server):
    # A master that is not there: the server keeps its data, serves reads and refuses writes.
    admin(server).execute_command("REPLICAOF", "127.0.0.1", free_port())
    return lambda: admin(server).execute_command("REPLICAOF", "NO", "ONE")


FAULTS = {
    "connection lost": (lose_connection, "cannot be reached"),
    "timeout": (pause_writes, "did not answer in time"),
    "out of memory": (fill_memory, "out of memory"),
    "read-only replica": (become_replica, "read-only"),
}


def stored(session: str, server: RedisServer) -> list[str]:
    from chatbot.store.conversations import ConversationStore

    return [m.content for m in ConversationStore(redis.Redis.from_url(server.url)).messages(session)]


def users(at: AppTest) -> list[str]:
    return [bubble_text(m) for m in at.chat_message if m.name == "user" and bubble_text(m)]


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_turn_through_a_store_fault_keeps_the_message_and_sends_it_again_with_one_click(app_env, server, fault):
    inject, says = FAULTS[fault]
    at = AppTest.from_file(str(ROOT / "views/chat.py"), default_timeout=TIMEOUT).run()
    at.chat_input(key="chat_input").set_value("Hello, is anyone there?").run()
    session = at.session_state["session_id"]
    assert len(stored(session, server)) == 2

    heal = inject(server)
    try:
        at.chat_input(key="chat_input").set_value(MESSAGE).run()
        assert not at.exception
        warnings = [w.value for w in at.warning]
        assert any(says in w and "kept" in w for w in warnings), warnings
        assert at.text_area(key="draft").value == MESSAGE
    finally:
        heal()

    at.button(key="resend_unsent").click().run()
    assert not at.exception
    assert users(at)[-1] == MESSAGE
    assert stored(session, server)[-2] == MESSAGE
    assert not [t for t in at.text_area if t.key == "draft"]


def test_a_store_fault_while_the_reply_streams_keeps_the_message(app_env, server, monkeypatch):
    # The store refuses writes half-way through the reply (out of memory), after the message was stored.
    from backends.offline import OfflineBackend

    original = OfflineBackend.stream
    heal = []

    def filling(self, request):
        for number, piece in enumerate(original(self, request)):
            if number == 2 and not heal:
                heal.append(fill_memory(server))
            yield piece

    monkeypatch.setattr(OfflineBackend, "stream", filling)
    at = AppTest.from_file(str(ROOT / "views/chat.py"), default_timeout=TIMEOUT).run()
    try:
        at.chat_input(key="chat_input").set_value(MESSAGE).run()
        assert heal and not at.exception
        assert any("out of memory" in e.value and "kept" in e.value for e in [*at.error, *at.warning])
    finally:
        heal[0]()
    session = at.session_state["session_id"]
    assert stored(session, server) == [MESSAGE]
    at.button(key="resend_unsent").click().run()
    assert not at.exception
    again = stored(session, server)
    assert again[:2] == [MESSAGE, MESSAGE] and len(again) == 3


# -- the vector store --------------------------------------------------------------------------------


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CHATBOT_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "chatbot", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True)


HOLD_THE_LOCK = """
import sys, time
from filelock import FileLock
with FileLock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_turn_while_another_process_changes_and_holds_the_vector_store(app_env, server, tmp_path):
    at = AppTest.from_file(str(ROOT / "views/chat.py"), default_timeout=TIMEOUT).run()
    at.chat_input(key="chat_input").set_value("How do I get a refund?").run()
    session = at.session_state["session_id"]

    # Another process adds an article; then it holds the store's write lock while the turn runs.
    article = tmp_path / "heat-pump-defrost.md"
    article.write_text("# Heat pump defrost\n\nA heat pump that shows error H7 is defrosting its outdoor coil. "
                       "It heats again within fifteen minutes; no action is needed.\n")
    added = cli(app_env, "ingest", str(article))
    assert added.returncode == 0, added.stderr
    from knowledge.client import LOCK

    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(app_env / "chroma" / LOCK)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        at.chat_input(key="chat_input").set_value("My heat pump shows error H7, what does it mean?").run()
    finally:
        holder.stdin.close()
        holder.wait()
    assert not at.exception
    reply = [m for m in at.chat_message if m.name == "assistant"][-1]
    assert "defrost" in reply.markdown[0].value.lower()
    assert stored(session, server)[2] == "My heat pump shows error H7, what does it mean?"


def test_a_turn_with_the_vector_store_gone_answers_from_the_keyword_index(tmp_path, embedder, store):
    # A Chroma server (CHROMA_HOST) that stops between two turns: the second turn still answers, from
    # the keyword index, and both messages are kept.
    from backends.offline import OfflineBackend
    from chatbot.turn.bot import Chatbot
    from knowledge.store import KnowledgeBase, make_chroma_client
    from tests.chroma_server import ChromaServer

    server = ChromaServer(tmp_path / "chroma")
    kb = KnowledgeBase(make_chroma_client(host=server.host, port=server.port), embedder, tmp_path / "index",
                       sync_interval=0)
    try:
        kb.ingest_upload("thermostat.md", b"# Thermostat errors\n\nError E4 means the boiler lost its flame: "
                         b"check the gas supply, then reset the boiler.\n")
        bot = Chatbot(knowledge=kb, backend=OfflineBackend(), store=store)
        first = bot.ask("v", "What does thermostat error E4 mean?")
        assert "vector" in first.meta.retrieved[0]["retrievers"]
        server.stop()
        second = bot.ask("v", "And how do I reset the boiler after error E4?")
        assert not second.meta.error and second.meta.retrieved
        assert second.meta.retrieved[0]["source"] == "thermostat.md"
        assert second.meta.retrieved[0]["retrievers"] == ["keyword"]
        assert [m.content for m in store.messages("v") if m.role == "user"] == [
            "What does thermostat error E4 mean?", "And how do I reset the boiler after error E4?"]
    finally:
        server.stop()
        kb.close()


def test_every_error_the_server_answers_is_a_store_unavailable_with_its_reason(server):
    from chatbot.store.server import connect
    from chatbot.store.conversations import ConversationStore
    from common.errors import StoreUnavailable

    store = ConversationStore(connect(server.url))
    # Another program left a value of the wrong type where a conversation's messages go.
    admin(server).set("chatbot:conv:clash:messages", "not a list")
    with pytest.raises(StoreUnavailable, match=r"refused the request \(WRONGTYPE\)"):
        store.begin_turn("clash", MESSAGE)
    with pytest.raises(StoreUnavailable, match="WRONGTYPE"):
        store.messages("clash")
    # The server forgot its scripts (a restart, SCRIPT FLUSH): NOSCRIPT is answered by loading them again.
    admin(server).script_flush()
    sent = store.begin_turn("flushed", MESSAGE)
    store.finish_turn("flushed", sent, [{"role": "assistant", "content": "Reset the boiler."}])
    assert [m.content for m in store.messages("flushed")] == [MESSAGE, "Reset the boiler."]
