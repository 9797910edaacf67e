"""`python -m chatbot` drives the same core headless."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    return {**os.environ, "CHATBOT_DATA_DIR": str(tmp_path_factory.mktemp("cli-data")), "CHATBOT_BACKEND": "offline"}


def cli(env, *args, check=True):
    result = subprocess.run([sys.executable, "-m", "chatbot", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_ask_streams_a_cited_offline_reply_and_continues_a_session(cli_env):
    first = cli(cli_env, "ask", "How do I get a refund?", "--json")
    assert "Offline mode" in first.stdout and "[1]" in first.stdout
    assert "refunds-how-to-request-a-refund.md" in first.stdout
    session = first.stderr.strip().rsplit("session: ", 1)[1].split()[0]
    meta = json.loads(first.stdout.strip().splitlines()[-1])
    assert meta["citations"] and meta["backend"] == "offline"
    cli(cli_env, "ask", "and how long does it take?", "--session", session)
    from chatbot.store.server import connect
    from chatbot.store.conversations import ConversationStore

    store = ConversationStore(connect(data_dir=Path(cli_env["CHATBOT_DATA_DIR"]) / "redis"))
    assert [m.role for m in store.messages(session)] == ["user", "assistant"] * 2


def test_ingest_and_search(cli_env, tmp_path):
    doc = tmp_path / "loyalty-points.md"
    doc.write_text("# Loyalty points\n\nEvery 10 euros spent earns one Nimbus star, redeemable at checkout.\n")
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.4 nonsense")
    result = cli(cli_env, "ingest", str(doc), str(bad), check=False)
    assert result.returncode == 1
    assert "loyalty-points.md: added" in result.stdout
    assert "broken.pdf: error (is not a readable PDF" in result.stdout
    found = json.loads(cli(cli_env, "search", "how do i earn stars", "-k", "3", "--json").stdout)
    assert found[0]["source"] == "loyalty-points.md"


def test_ingest_names_files_by_their_folder(cli_env, tmp_path):
    for plan in ("basic", "plus"):
        (tmp_path / "plans" / plan).mkdir(parents=True)
        (tmp_path / "plans" / plan / "cancellation.md").write_text(f"# Cancelling {plan}\n\nThe {plan} rules.\n")
    result = cli(cli_env, "ingest", str(tmp_path / "plans"))
    assert "[1/2] basic/cancellation.md: added (1 chunk)" in result.stdout
    assert "[2/2] plus/cancellation.md: added (1 chunk)" in result.stdout
    # A copy of a stored document under another name is held as junk unless named with --allow.
    again = cli(cli_env, "ingest", str(tmp_path / "plans" / "basic" / "cancellation.md"),
                str(tmp_path / "plans" / "plus" / "cancellation.md"), "--allow", "cancellation.md", check=False)
    assert again.returncode == 1
    assert "cancellation.md: added (1 chunk)" in again.stdout
    assert f"cancellation.md: error ({tmp_path / 'plans' / 'plus' / 'cancellation.md'} and " in again.stdout
    assert "would both be stored as cancellation.md" in again.stdout


def test_a_backend_that_cannot_answer_says_why_and_the_offline_backend_answers(cli_env):
    # The same decision as the app's pages: the offline backend answers, and the reason is given.
    env = {k: v for k, v in cli_env.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    result = cli(env, "ask", "How do I get a refund?", "--backend", "openai")
    assert "note: openai cannot answer" in result.stderr and "OPENAI_API_KEY" in result.stderr
    assert "Offline mode" in result.stdout


def test_ask_is_held_to_the_spending_limits(cli_env, tmp_path):
    from devtools.servers.openai import OpenAIServer

    with OpenAIServer("Refunds reach your card within 5 days.", usage=(900, 100)) as server:
        env = {**cli_env, "CHATBOT_DATA_DIR": str(tmp_path), "OPENAI_BASE_URL": server.base_url,
               "CHATBOT_MAX_RETRIES": "0", "CHATBOT_DAILY_TOKEN_LIMIT": "1000"}
        first = cli(env, "ask", "How long does a refund take?", "--backend", "openai")
        assert "within 5 days" in first.stdout and "note:" not in first.stderr
        second = cli(env, "ask", "How long does a refund take?", "--backend", "openai")
        sent = len(server.requests)
    assert "Today's limit of 1,000 tokens" in second.stderr and "Offline mode" in second.stdout
    assert sent == 1  # the second question never reached the provider


@pytest.mark.parametrize("reply,finish,says,code", [
    ("Refunds reach your card within", "length", "cut off at the token limit", 0),
    ("\n\n", "end", "No answer: the model returned an empty reply", 1),
])
def test_ask_says_when_a_reply_is_cut_off_or_empty(cli_env, reply, finish, says, code):
    from devtools.servers.openai import OpenAIServer

    with OpenAIServer(reply, finish=finish) as server:
        env = {**cli_env, "OPENAI_BASE_URL": server.base_url, "CHATBOT_MAX_RETRIES": "0"}
        result = cli(env, "ask", "How long does a refund take?", "--backend", "openai", check=False)
    assert result.returncode == code, result.stderr
    assert says in result.stderr


def test_ingest_holds_a_junk_file_by_name_and_takes_it_with_allow(cli_env, tmp_path):
    junk = tmp_path / "refund.md"
    junk.write_text("# Refund\n\n" + "refund " * 300)
    good = tmp_path / "gift-cards.md"
    good.write_text("# Gift cards\n\nA Nimbus gift card never expires and pays for any device or plan.\n")
    held = cli(cli_env, "ingest", str(junk), str(good), check=False)
    assert held.returncode == 1
    assert 'refund.md: held (is one word repeated ("refund"' in held.stdout and "gift-cards.md: added" in held.stdout
    assert "1 held: name them with --allow" in held.stdout
    allowed = cli(cli_env, "ingest", str(junk), "--allow", "refund.md")
    assert "refund.md: added (3 chunks)" in allowed.stdout
