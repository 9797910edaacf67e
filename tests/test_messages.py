"""One typed message record: conversations stored by earlier releases load, every status reads right,
and the pages, analytics and exports read messages through the type only."""

from __future__ import annotations

import json
import re
from pathlib import Path

from chatbot.store import analytics
from chatbot.store.conversations import ConversationStore
from chatbot.store.messages import (HANDOFF, PENDING_SECONDS, STALE_TEXT, Feedback, Message, Status, TurnMeta,
                                    count_turns, training_messages, turn_meta, unanswered)

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_733_000_000.0

PASSAGE = {"title": "Refunds", "heading": "", "source": "refunds.md", "chunk": 0, "score": 0.8,
           "text": "Ask within 30 days."}
# A conversation as the first release wrote it: no turn ids, a reply's metadata without the fields
# added since (outcome, stop_reason, interrupted, redacted, agent...), numbers written as text by
# a hand-made import, and a field this release does not know.
OLD_MESSAGES = [
    {"ts": T0, "role": "user", "content": "How do I get a refund?"},
    {"ts": T0 + 2, "role": "assistant", "content": "Within 30 days [1].", "meta": {
        "session_id": "old", "backend": "openai", "model": "gpt-4o-mini", "prompt_name": "general",
        "prompt_version": "2", "retrieved": [PASSAGE],
        "citations": [1], "input_tokens": "310", "output_tokens": 42, "latency_ms": None, "ttft_ms": 180.5,
        "route": {"intent": "refunds", "confidence": 0.91}, "triage": {"sentiment": "neutral", "priority": 3},
        "error": "", "created_at": T0 + 2, "experiment": "b"}},
    {"ts": T0 + 60, "role": "user", "content": "And the shipping?", "meta": {"error": "timeout", "backend": "openai"}},
]


def write_old_conversation(store: ConversationStore, session_id: str, messages: list[dict]) -> None:
    """Put the messages in Redis the way an earlier release left them: raw JSON, one per list item."""
    store.client.rpush(f"chatbot:conv:{session_id}:messages", *[json.dumps(m) for m in messages])
    store.client.hset(f"chatbot:conv:{session_id}:meta", mapping={"created": T0, "updated": T0 + 60, "turns": 1})
    store.client.hset(f"chatbot:conv:{session_id}:feedback", mapping={"1:score": "1", "1:comment": "clear",
                                                                      "1:at": T0 + 5})


def test_a_conversation_stored_in_the_old_format_loads_typed_and_loses_nothing(store):
    write_old_conversation(store, "old", OLD_MESSAGES)
    store.clock = lambda: T0 + 120
    question, answer, failed = store.messages("old")
    assert (question.role, question.content, question.status, question.meta) == (
        "user", "How do I get a refund?", Status.ANSWERED, None)
    assert answer.status is Status.ANSWERED and answer.meta is not None
    assert (answer.meta.prompt_version, answer.meta.input_tokens, answer.meta.latency_ms) == (2, 310, 0.0)
    assert answer.meta.intent == "refunds" and answer.meta.priority == 3 and answer.meta.outcome == ""
    assert answer.meta.sources == [{"n": 1, **PASSAGE}]
    assert answer.feedback == Feedback(score=1, comment="clear", at=T0 + 5)
    assert failed.status is Status.FAILED and failed.failed and failed.meta.error == "timeout"
    assert count_turns([question, answer, failed]) == (1, 1)
    # Written back, each message is what was stored (the unknown field too), plus the feedback read with it.
    assert answer.to_stored()["meta"]["experiment"] == "b"
    assert Message.from_stored(answer.to_stored()) == answer
    assert question.to_stored() == OLD_MESSAGES[0] and failed.to_stored()["meta"]["error"] == "timeout"
    # The export and the transcript read the old conversation like a new one.
    conversation = store.conversation("old")
    assert json.loads(analytics.to_json(conversation))["messages"][1]["meta"]["route"]["intent"] == "refunds"
    markdown = analytics.to_markdown(conversation)
    assert "- [1] Refunds (refunds.md)" in markdown and "> No reply: timeout" in markdown


def test_the_stored_form_written_today_is_the_old_one(store):
    sent = store.begin_turn("new", "Where is my parcel?")
    assert set(sent) - {"at"} == {"ts", "role", "content", "turn", "status"} and sent["status"] == "pending"
    store.finish_turn("new", sent, [{"role": "assistant", "content": "On its way.",
                                     "meta": TurnMeta(session_id="new", backend="offline", model="").to_dict()}])
    raw = [json.loads(r) for r in store.client.lrange("chatbot:conv:new:messages", 0, -1)]
    assert "status" not in raw[0] and raw[1]["meta"]["backend"] == "offline"
    assert [m.status for m in store.messages("new")] == [Status.ANSWERED, Status.ANSWERED]


def message(role: str, meta: dict | None = None, **fields) -> Message:
    return Message.from_stored({"ts": T0, "role": role, "content": "x", **({"meta": meta} if meta else {}), **fields})


def test_each_status_from_what_was_stored():
    assert message("user", status="pending").status is Status.PENDING
    assert message("user").status is Status.ANSWERED  # its reply carries the metadata
    assert message("assistant", {"backend": "openai", "outcome": "answer"}).status is Status.ANSWERED
    assert message("assistant", {"interrupted": True, "error": "cut"}).status is Status.INTERRUPTED
    assert message("user", {"error": "500"}).status is Status.FAILED
    assert message("user", {"outcome": "empty"}).status is Status.FAILED
    assert message("assistant", {"backend": HANDOFF}).status is Status.WAITING_FOR_HUMAN
    silent = message("user", {"backend": HANDOFF, "triage": {"escalate": True}})
    assert silent.status is Status.WAITING_FOR_HUMAN and not silent.failed
    assert Status.WAITING_FOR_HUMAN == "waiting_for_human"  # a plain string in JSON and in Redis


def test_a_pending_turn_reads_as_interrupted_once_its_process_is_gone(store):
    sent = store.begin_turn("gone", "Is my order late?")
    store.clock = lambda: sent["ts"] + PENDING_SECONDS
    [stale] = store.messages("gone")
    assert stale.status is Status.INTERRUPTED and stale.meta.error == STALE_TEXT and stale.failed
    assert unanswered([stale]) is stale


def test_turn_metadata_is_on_the_reply_or_on_the_message():
    messages = [message("user"), message("assistant", {"backend": "openai", "route": {"intent": "refunds"}}),
                message("user", {"error": "boom", "route": {"intent": "billing"}})]
    assert [getattr(turn_meta(messages, i), "intent", None) for i in range(3)] == ["refunds", None, "billing"]


def test_training_leaves_out_failed_messages_and_interrupted_replies():
    messages = [message("user"), message("assistant", {"interrupted": True, "error": "cut"}),
                message("user", {"error": "500"}), message("user"), message("assistant", approved=True)]
    assert [(m["role"], m["approved"]) for m in training_messages(messages)] == [("user", False), ("assistant", True)]


def test_turn_meta_reads_anything_stored():
    meta = TurnMeta.from_dict({"input_tokens": None, "latency_ms": "12.5", "citations": None, "route": "junk",
                               "interrupted": 1, "future": {"x": 1}})
    assert (meta.input_tokens, meta.latency_ms, meta.citations, meta.route, meta.interrupted) == (0, 12.5, [], {}, True)
    assert meta.created_at == 0.0 and meta.to_dict()["future"] == {"x": 1}
    assert TurnMeta.from_dict(meta.to_dict()) == meta


# Raw reads of a stored message: its metadata by key, or its role/status/content by key.
RAW_READ = re.compile(r"""\bmeta(\.get\(|\[)|\b(message|m|last|following)(\.get\(|\[)["'](role|content|meta|status|turn|"""
                      r"""feedback|approved)""")


def test_the_store_analytics_pages_and_exports_read_messages_through_the_type():
    readers = [*(ROOT / "chatbot" / "store").glob("*.py"), *(ROOT / "ui").glob("*.py"), *(ROOT / "views").glob("*.py"),
               *(ROOT / "cli").glob("*.py"), ROOT / "chatbot" / "turn" / "bot.py"]
    # messages.py is the type itself; scripts.py holds the store's Lua scripts, which run inside Redis.
    raw = {f"{path.relative_to(ROOT)}:{n}": line.strip() for path in readers
           if path.name not in ("messages.py", "scripts.py")
           for n, line in enumerate(path.read_text().splitlines(), 1) if RAW_READ.search(line)}
    assert raw == {}


def test_the_chat_and_history_pages_show_a_conversation_stored_in_the_old_format(tmp_path):
    from streamlit.testing.v1 import AppTest

    from chatbot.store.server import connect
    from tests.conftest import app_environment

    (tmp_path / "knowledge").mkdir()
    (tmp_path / "knowledge" / ".demo-seeded").write_text("seeded\n")  # no demo articles needed here
    with app_environment(tmp_path, CHATBOT_ADMIN_PASSWORD="pw"):
        store = ConversationStore(connect(data_dir=tmp_path / "redis"))
        write_old_conversation(store, "0123456789abcdef", OLD_MESSAGES)
        store.client.zadd("chatbot:conversations", {"0123456789abcdef": T0 + 60})
        try:
            chat = AppTest.from_file(str(ROOT / "views" / "chat.py"), default_timeout=120)
            chat.query_params["c"] = "0123456789abcdef"
            chat.run()
            assert not chat.exception
            assert [m.name for m in chat.chat_message] == ["user", "assistant", "user", "assistant"]
            assert "No reply: timeout" in chat.chat_message[3].error[0].value  # the failed turn, said so
            assert chat.button(key="resend_failed").label == "Send it again"
            assert chat.chat_message[1].expander[0].label == "Sources (1 cited)"
            history = AppTest.from_file(str(ROOT / "views" / "history.py"), default_timeout=120)
            history.query_params["open"] = "0123456789abcdef"
            history.run()
            assert not history.exception
            assert any("helpful" in c.value and "clear" in c.value for c in history.caption)
        finally:
            store.client.shutdown(nosave=True)
