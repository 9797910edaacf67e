"""Every page through Streamlit's AppTest, on a real data directory with the demo knowledge base."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import app_environment

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120  # the first run loads the embedding model and seeds the demo knowledge base


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    """One data directory for the module: cached services are per process, like a real server."""
    with app_environment(tmp_path_factory.mktemp("app-data"), CHATBOT_ADMIN_PASSWORD="correct horse") as data:
        yield data


def page(path: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=TIMEOUT)
    return at.run()


def test_app_entry_point_renders_the_chat(app_env):
    at = page("app.py")
    assert not at.exception
    assert at.title[0].value == "Support chat"


def test_chat_turn_renders_a_cited_reply_and_stats(app_env):
    at = page("views/chat.py")
    assert not at.exception
    at.chat_input(key="chat_input").set_value("How do I get a refund?").run()
    assert not at.exception
    assistant = [m for m in at.chat_message if m.name == "assistant"]
    assert assistant, "no reply rendered"
    reply = assistant[-1].markdown[0].value
    assert "Offline mode" in reply and "[1]" in reply
    assert any("Sources" in e.label for e in assistant[-1].expander)
    assert any(c.value.startswith("offline · ") and " ms" in c.value for c in assistant[-1].caption)
    turns = next(m for m in at.sidebar.metric if m.label == "Turns")
    assert turns.value == "1"


def test_new_conversation_empties_the_chat(app_env):
    at = page("views/chat.py")
    at.chat_input(key="chat_input").set_value("My camera is offline").run()
    assert len(at.chat_message) >= 2
    first_id = at.session_state["session_id"]
    at.button(key="new_conversation").click().run()
    assert not at.exception
    assert len(at.chat_message) == 0
    assert at.session_state["session_id"] != first_id
    assert next(m for m in at.sidebar.metric if m.label == "Turns").value == "0"


def test_oversized_and_empty_messages(app_env):
    at = page("views/chat.py")
    at.chat_input(key="chat_input").set_value("x" * 4001).run()
    assert any("the limit is 4,000" in w.value for w in at.warning)
    assert len(at.chat_message) == 0


def test_missing_key_names_the_setting_and_falls_back(app_env, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    at = page("views/chat.py")
    at.selectbox(key="chat_backend").select("anthropic").run()
    assert not at.exception
    assert any("ANTHROPIC_API_KEY" in e.value for e in at.main.error)
    at.chat_input(key="chat_input").set_value("How do I get a refund?").run()
    assert "Offline mode" in [m for m in at.chat_message if m.name == "assistant"][-1].markdown[0].value


def test_knowledge_page_lists_documents_and_searches(app_env):
    at = page("views/knowledge_base.py")
    assert not at.exception
    assert "documents" in at.subheader[0].value
    at.text_input(key="kb_query").input("parcel never arrived").run()
    assert not at.exception
    assert any("score" in m.value for m in at.markdown)


@pytest.mark.parametrize("path", ["views/prompts.py", "views/fine_tuning.py"])
def test_admin_pages_are_locked_without_the_password(app_env, path):
    if not (ROOT / path).exists():
        pytest.skip(f"{path} is not in this build")
    at = page(path)
    assert not at.exception
    assert at.subheader[0].value == "Admin sign-in"
    at.text_input(key="admin_password_input").input("wrong")
    at.button(key="admin_unlock").click().run()
    assert any("Wrong password" in e.value for e in at.error)
    at.text_input(key="admin_password_input").input("correct horse")
    at.button(key="admin_unlock").click().run()
    assert not at.exception
    assert not any(s.value == "Admin sign-in" for s in at.subheader)


def test_admin_sign_in_expires_and_can_be_signed_out(app_env):
    import time

    from common.settings import Settings

    at = AppTest.from_file(str(ROOT / "views/prompts.py"), default_timeout=TIMEOUT)
    at.session_state["admin_since"] = time.time() - Settings().admin_session_hours * 3600 - 1
    at.run()
    assert at.subheader[0].value == "Admin sign-in"  # expired
    at.text_input(key="admin_password_input").input("correct horse")
    at.button(key="admin_unlock").click().run()
    assert not any(s.value == "Admin sign-in" for s in at.subheader)
    at.sidebar.button(key="admin_sign_out").click().run()
    assert at.subheader[0].value == "Admin sign-in"


def test_chat_with_an_adapter_runs_the_local_backend(app_env, tmp_path):
    """What the Training page's "Chat with this adapter" leaves behind: a local chat on that adapter."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from training.tiny_model import make_tiny_model

    model_dir = make_tiny_model(tmp_path / "tiny")
    adapter_dir = tmp_path / "adapter"
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    get_peft_model(base, LoraConfig(r=4, target_modules="all-linear")).save_pretrained(adapter_dir)

    at = AppTest.from_file(str(ROOT / "views/chat.py"), default_timeout=TIMEOUT)
    at.session_state["chat_backend"] = "local"
    at.session_state["local_model_path"] = str(model_dir)
    at.session_state["local_adapter_path"] = str(adapter_dir)
    at.run()
    assert not at.exception and not at.main.error
    at.chat_input(key="chat_input").set_value("Where is my parcel?").run()
    assert not at.exception
    reply = [m for m in at.chat_message if m.name == "assistant"][-1]
    assert reply.markdown[0].value.strip()
    assert any(c.value.startswith("local · ") for c in reply.caption)


def test_each_customer_message_shows_its_triage_and_escalation_shows_a_banner(app_env):
    at = page("views/chat.py")
    at.selectbox(key="customer_tier").select("business").run()
    at.chat_input(key="chat_input").set_value("I was charged twice for my subscription this month").run()
    assert not at.exception
    customer = [m for m in at.chat_message if m.name == "user"][-1]
    badges = " ".join(md.value for md in customer.markdown)
    assert "billing" in badges and "priority" in badges
    assert any(e.label == "Routing scores" for e in customer.expander)

    at.chat_input(key="chat_input").set_value("I will take legal action, put me through to a manager now").run()
    assert not at.exception
    assert any("Handed off to a human" in e.value for e in at.error)
    assert any(e.label == "Handoff summary for the agent" for e in at.expander)
    assert "State: **escalated**" in " ".join(c.value for c in at.sidebar.caption)
    handoff = [m for m in at.chat_message if m.name == "assistant"][-1]
    caption = next(c.value for c in handoff.caption if c.value.startswith("handoff · "))
    assert all(part.strip() for part in caption.split("·")), caption  # no empty model slot
    # The customer's next message is kept for the human; the assistant stays silent.
    replies_before = len([m for m in at.chat_message if m.name == "assistant"])
    at.chat_input(key="chat_input").set_value("hello??").run()
    assert len([m for m in at.chat_message if m.name == "assistant"]) == replies_before
    assert [m for m in at.chat_message if m.name == "user"][-1].text[0].value == "hello??"

    # One definition of a turn: a customer message and what answered it (reply, notice, or a person).
    assert next(m for m in at.sidebar.metric if m.label == "Turns").value == "3"
    session = at.session_state["session_id"]
    history = AppTest.from_file(str(ROOT / "views/history.py"), default_timeout=TIMEOUT)
    history.query_params["open"] = session
    history.run()
    assert not history.exception and history.selectbox(key="history_open").value == session
    table = history.dataframe[0].value
    assert list(table.loc[table["id"] == session, "turns"]) == [3]
    assert any("3 turns" in c.value for c in history.caption)


def test_customer_text_shows_exactly_as_typed_and_the_reply_stays_markdown(app_env):
    at = page("views/chat.py")
    typed = "# x order __class__ -- refund *now*"
    at.chat_input(key="chat_input").set_value(typed).run()
    assert not at.exception
    customer = [m for m in at.chat_message if m.name == "user"][-1]
    assert [t.value for t in customer.text] == [typed]  # plain text: no heading, no bold, no dash
    assert not any("__class__" in md.value or "refund *now*" in md.value for md in customer.markdown)
    reply = [m for m in at.chat_message if m.name == "assistant"][-1]
    assert reply.markdown and "[1]" in reply.markdown[0].value and not reply.text
