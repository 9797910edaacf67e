"""Chat page defects a browser tour found, each checked through AppTest on a real data directory.

A real closed port where the Ollama server should be, a real adapter folder whose base model is missing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import app_environment, bubble_text
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180  # the first run loads the embedding model and seeds the demo knowledge base
OFFLINE_NOTICE = "Using the offline backend until this is fixed."


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    # Nothing listens on this port: the Ollama client's connection is refused, for real.
    with app_environment(tmp_path_factory.mktemp("chat-defects"), CHATBOT_ADMIN_PASSWORD="pw",
                         OLLAMA_HOST=f"http://127.0.0.1:{free_port()}", CHATBOT_MAX_RETRIES="0") as data:
        yield data


def store():
    from ui.services import get_services

    return get_services().store


def chat(**query: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "views/chat.py"), default_timeout=TIMEOUT)
    at.query_params.update(query)
    return at.run()


def fail_on_ollama(at: AppTest, text: str) -> AppTest:
    at.selectbox(key="chat_backend").select("ollama").run()
    at.chat_input(key="chat_input").set_value(text).run()
    assert not at.exception
    assert any(e.value.startswith("No reply:") for e in at.error)
    return at


def test_send_it_again_answers_the_stored_message_without_a_second_copy(app_env):
    at = fail_on_ollama(chat(), "How do I get a refund?")
    session = at.session_state["session_id"]
    at.button(key="resend_failed").click().run()  # Ollama is set aside: the offline backend answers
    assert not at.exception
    messages = store().messages(session)
    assert [(m.role, m.content) for m in messages][:1] == [("user", "How do I get a refund?")]
    assert [m.role for m in messages] == ["user", "assistant"]
    assert "Offline mode" in messages[1].content and messages[0].meta is None
    assert [bubble_text(m) for m in at.chat_message if m.name == "user"] == ["How do I get a refund?"]
    summary = store().summaries([session])[0]
    assert (summary.turns, summary.failed) == (1, 0)


def test_the_reason_a_backend_cannot_answer_sits_above_the_chat_not_at_the_end_of_the_sidebar(app_env):
    at = fail_on_ollama(chat(), "Where is my parcel?")
    order = list(at.main)
    title = next(i for i, n in enumerate(order) if type(n).__name__ == "Title")
    reason = next(i for i, n in enumerate(order) if type(n).__name__ == "Error" and n.value.startswith("**ollama**"))
    first_message = next(i for i, n in enumerate(order) if type(n).__name__ == "ChatMessage")
    assert title < reason < first_message  # in view above the conversation
    assert any(OFFLINE_NOTICE == i.value for i in at.main.info) and at.button(key="retry_backend")
    assert not at.sidebar.error  # the sidebar (its end out of view) no longer carries it
    assert not [e for e in at.error if not e.value.strip()]  # and no empty error box anywhere


def test_the_chosen_backend_survives_a_refresh(app_env):
    at = chat()
    at.selectbox(key="chat_backend").select("ollama").run()
    assert at.query_params["backend"] == "ollama"
    refreshed = chat(**{k: at.query_params[k] for k in at.query_params})  # a new browser session, same URL
    assert not refreshed.exception
    assert refreshed.selectbox(key="chat_backend").value == "ollama"
    refreshed.selectbox(key="chat_backend").select("offline").run()  # the default: the URL stays short
    assert "backend" not in refreshed.query_params
    assert chat(backend="no-such-backend").selectbox(key="chat_backend").value == "offline"


def test_chat_with_this_adapter_opens_a_new_conversation_with_one_notice(app_env):
    adapter = app_env / "training" / "adapters" / "run-1"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(app_env / "gone"),
                                                             "peft_type": "LORA"}))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state["admin_since"] = time.time()
    at.run()
    fail_on_ollama(at, "My doorbell is offline")  # a conversation open, and a backend set aside
    earlier = at.session_state["session_id"]
    at.switch_page("views/fine_tuning.py").run()
    at.selectbox(key="adapter_select").select("run-1").run()
    at.button(key="adapter_chat").click().run()
    assert not at.exception and at.title[0].value == "Support chat"
    assert at.session_state["session_id"] != earlier and not at.chat_message
    assert at.selectbox(key="chat_backend").value == "local"
    notices = [i.value for i in at.info if i.value == OFFLINE_NOTICE]
    assert len(notices) == 1, notices
    assert any(str(app_env / "gone") in e.value for e in at.main.error)
