"""`python -m chatbot conversations ...` and `ask --session` across processes, on real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chatbot.store.server import connect
from chatbot.store.conversations import ConversationStore
from tests.redis_server import RedisServer, require_redis_server

ROOT = Path(__file__).resolve().parent.parent


def cli(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "chatbot", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def seed(store: ConversationStore) -> None:
    store.append("refund1", [
        {"role": "user", "content": "How do I get a refund?"},
        {"role": "assistant", "content": "Ask within 30 days [1].", "meta": {
            "backend": "offline", "model": "knowledge-base", "latency_ms": 80.0, "citations": [1],
            "retrieved": [{"title": "Refund policy", "source": "refunds.md", "text": "..."}],
            "route": {"intent": "refunds", "confidence": 0.91}, "triage": {"sentiment": "neutral"}}},
    ], {"memory": {"messages": [{"role": "user", "content": "How do I get a refund?"},
                                {"role": "assistant", "content": "Ask within 30 days [1]."}],
                   "summary": "", "summarised_count": 0}}, agent="ana")
    store.append("human1", [
        {"role": "user", "content": "get me a person"},
        {"role": "assistant", "content": "A colleague will take over.", "meta": {
            "route": {"intent": "talk_to_human"},
            "triage": {"escalate": True, "reasons": ["asked for a person"]}}},
    ])
    store.set_feedback("refund1", 1, 1, "clear")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A data directory with two conversations; the demo articles are not needed for these commands."""
    data = tmp_path_factory.mktemp("cli-conversations")
    (data / "knowledge").mkdir()
    (data / "knowledge" / ".demo-seeded").write_text("seeded\n")
    client = connect(data_dir=data / "redis")
    seed(ConversationStore(client))
    yield {**os.environ, "CHATBOT_DATA_DIR": str(data), "CHATBOT_BACKEND": "offline"}
    client.shutdown(save=True)


def test_list_as_a_table_and_as_json(env):
    table = cli(env, "conversations", "list").stdout
    lines = table.strip().splitlines()
    assert lines[0].split()[:3] == ["id", "last", "active"]
    assert lines[1].startswith("human1") and "yes" in lines[1]
    assert lines[2].startswith("refund1") and "How do I get a refund?" in lines[2]
    listed = json.loads(cli(env, "conversations", "list", "--json").stdout)
    assert [c["id"] for c in listed] == ["human1", "refund1"]
    assert listed[1]["intents"] == {"refunds": 1} and listed[1]["agent"] == "ana"


@pytest.mark.parametrize("args, expected", [
    (["--search", "REFUND"], ["refund1"]),
    (["--intent", "talk_to_human"], ["human1"]),
    (["--escalated"], ["human1"]),
    (["--agent", "ana"], ["refund1"]),
])
def test_list_filters(env, args, expected):
    listed = json.loads(cli(env, "conversations", "list", "--json", *args).stdout)
    assert [c["id"] for c in listed] == expected


def test_show_prints_the_messages_with_their_metadata(env):
    shown = cli(env, "conversations", "show", "refund1").stdout
    assert "# Conversation refund1" in shown
    assert shown.index("How do I get a refund?") < shown.index("Ask within 30 days [1].")
    assert "- [1] Refund policy (refunds.md)" in shown
    assert "intent refunds (0.91)" in shown and "Feedback: thumbs up" in shown
    whole = json.loads(cli(env, "conversations", "show", "refund1", "--json").stdout)
    assert [m["role"] for m in whole["messages"]] == ["user", "assistant"]
    assert whole["messages"][1]["meta"]["route"]["intent"] == "refunds"
    assert whole["messages"][1]["feedback"]["comment"] == "clear"


def test_export_markdown_and_json(env, tmp_path):
    target = tmp_path / "out.json"
    cli(env, "conversations", "export", "human1", "--format", "json", "-o", str(target))
    exported = json.loads(target.read_text())
    assert exported["id"] == "human1" and exported["escalated"] is True
    assert exported["messages"][0]["content"] == "get me a person"
    markdown = cli(env, "conversations", "export", "human1", "--format", "md").stdout
    assert markdown.startswith("# Conversation human1")
    assert "- Escalated: asked for a person" in markdown


def test_missing_conversation_is_a_clear_error(env):
    result = cli(env, "conversations", "show", "nope", check=False)
    assert result.returncode == 2 and "No conversation nope" in result.stderr
    result = cli(env, "conversations", "delete", "nope", check=False)
    assert result.returncode == 2 and "no conversation nope" in result.stderr


def test_ask_continues_a_stored_conversation_across_processes(env):
    cli(env, "ask", "and how long does it take?", "--session", "refund1")
    second = cli(env, "ask", "thanks, bye", "--session", "refund1", "--json")
    assert json.loads(second.stdout.strip().splitlines()[-1])["session_id"] == "refund1"
    whole = json.loads(cli(env, "conversations", "show", "refund1", "--json").stdout)
    assert [m["content"] for m in whole["messages"] if m["role"] == "user"] == [
        "How do I get a refund?", "and how long does it take?", "thanks, bye"]
    assert [m["role"] for m in whole["messages"]] == ["user", "assistant"] * 3
    # Each process read the memory the previous one saved.
    window = [m["content"] for m in whole["state"]["memory"]["messages"]]
    assert window[:3] == ["How do I get a refund?", "Ask within 30 days [1].", "and how long does it take?"]


def test_delete(env):
    store = ConversationStore(connect(data_dir=Path(env["CHATBOT_DATA_DIR"]) / "redis"))
    store.append("bye", [{"role": "user", "content": "x"}])
    assert cli(env, "conversations", "delete", "bye").stdout.strip() == "deleted bye"
    assert not store.exists("bye")
    assert "bye" not in [c["id"] for c in json.loads(cli(env, "conversations", "list", "--json").stdout)]


def test_commands_use_a_shared_server_through_redis_url(tmp_path):
    require_redis_server()
    with RedisServer(tmp_path / "redis") as server:
        seed(ConversationStore(connect(server.url)))
        env = {**os.environ, "CHATBOT_DATA_DIR": str(tmp_path / "data"), "REDIS_URL": server.url}
        listed = json.loads(cli(env, "conversations", "list", "--json").stdout)
        assert [c["id"] for c in listed] == ["human1", "refund1"]
        cli(env, "conversations", "delete", "human1")
        assert not ConversationStore(connect(server.url)).exists("human1")
        assert not (tmp_path / "data" / "redis" / "sessions.rdb").exists()  # no embedded server was started
