"""Every backend that cannot answer fails the same way on the chat page, and no typed text is lost.

Through Streamlit's AppTest on a real data directory: a real folder that holds no model, a real
closed port where the Ollama server should be, the real length limit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import app_environment, bubble_text
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180  # the first run loads the embedding model and seeds the demo knowledge base


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    # Nothing listens on this port: the Ollama client's connection is refused, for real.
    with app_environment(tmp_path_factory.mktemp("faults-app"), CHATBOT_ADMIN_PASSWORD="pw",
                         OLLAMA_HOST=f"http://127.0.0.1:{free_port()}", CHATBOT_MAX_RETRIES="0") as data:
        yield data


def chat() -> AppTest:
    return AppTest.from_file(str(ROOT / "views/chat.py"), default_timeout=TIMEOUT).run()


def replies(at: AppTest) -> list[str]:
    return [m.markdown[0].value for m in at.chat_message if m.name == "assistant" and m.markdown]


@pytest.mark.parametrize("contents", [{}, {"config.json": '{"name": "my notes"}', "notes.txt": "hello"}],
                         ids=["empty folder", "folder of other files"])
def test_a_local_folder_that_is_not_a_model_says_so_and_the_chat_answers_offline(app_env, tmp_path, contents):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    for name, text in contents.items():
        (folder / name).write_text(text)
    at = AppTest.from_file(str(ROOT / "views/chat.py"), default_timeout=TIMEOUT)
    at.session_state["chat_backend"] = "local"
    at.session_state["local_model_choice"] = "folder"
    at.session_state["local_model_path"] = str(folder)
    at.run()
    assert not at.exception
    errors = [e.value for e in at.main.error]
    assert any(str(folder) in e for e in errors), errors
    assert not any("Traceback" in e or "site-packages" in e for e in errors)
    assert any("offline backend" in i.value for i in at.main.info)
    at.chat_input(key="chat_input").set_value("How do I get a refund?").run()
    assert not at.exception
    assert "Offline mode" in replies(at)[-1]


def test_ollama_without_a_server_says_so_answers_offline_and_the_failed_message_is_sent_again(app_env):
    at = chat()
    at.selectbox(key="chat_backend").select("ollama").run()
    assert not at.exception
    at.chat_input(key="chat_input").set_value("How do I get a refund?").run()
    assert not at.exception

    # The message is kept with why it got no reply, and a button sends it again.
    user = [m for m in at.chat_message if m.name == "user"]
    assert bubble_text(user[-1]) == "How do I get a refund?"
    assert any(e.value.startswith("No reply:") and "Ollama" in e.value for e in at.error)
    # The page says why, above the chat, like a missing key or a bad folder; the offline backend answers meanwhile.
    assert any("ollama" in e.value and "Ollama" in e.value for e in at.main.error)
    assert any("offline backend" in i.value for i in at.main.info)

    at.button(key="resend_failed").click().run()
    assert not at.exception
    assert "Offline mode" in replies(at)[-1]
    assert not [b for b in at.button if b.key == "resend_failed"]

    # "Try ollama again" takes the notice away (and the next message goes to Ollama again).
    at.button(key="retry_backend").click().run()
    assert not at.main.error


def test_a_message_over_the_length_limit_is_kept_to_be_shortened_and_sent(app_env):
    at = chat()
    long = "My parcel never arrived and nobody answers my emails. " * 80
    at.chat_input(key="chat_input").set_value(long).run()
    assert not at.exception
    assert any("the limit is 4,000" in w.value for w in at.warning)
    assert at.text_area(key="draft").value == long
    assert len(at.chat_message) == 0

    at.text_area(key="draft").input("My parcel never arrived and nobody answers my emails.").run()
    at.button(key="resend_unsent").click().run()
    assert not at.exception
    assert [bubble_text(m) for m in at.chat_message if m.name == "user"] == [
        "My parcel never arrived and nobody answers my emails."]
    assert "Offline mode" in replies(at)[-1]
    assert not [t for t in at.text_area if t.key == "draft"]
