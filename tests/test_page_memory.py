"""Choices made on the Training and Prompts pages are still there after a visit to another page.

Through AppTest on the whole multipage app (`app.py`), switching pages as the sidebar does.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import app_environment

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180  # the first run loads the embedding model and seeds the demo knowledge base


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    with app_environment(tmp_path_factory.mktemp("page-memory"), CHATBOT_ADMIN_PASSWORD="pw") as data:
        yield data


def signed_in_app() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state["admin_since"] = time.time()  # signed in (the sign-in itself is tested elsewhere)
    return at.run()


def visit_chat_and_come_back(at: AppTest, page: str) -> AppTest:
    at.switch_page("views/chat.py").run()
    assert not at.exception and at.title[0].value == "Support chat"
    at.switch_page(page).run()
    assert not at.exception
    return at


def test_prompts_keeps_the_template_the_test_message_and_unsaved_edits(app_env):
    at = signed_in_app()
    at.switch_page("views/prompts.py").run()
    at.selectbox(key="prompts_name").select("billing").run()
    at.radio(key="prompts_diff_mode").set_value("Side by side").run()
    at.text_area(key="prompts_test_query").input("I was charged twice").run()
    edited = at.text_area(key="prompts_editor_billing").value + "\n# an edit not saved yet\n"
    at.text_area(key="prompts_editor_billing").input(edited).run()

    at = visit_chat_and_come_back(at, "views/prompts.py")
    assert at.selectbox(key="prompts_name").value == "billing"
    assert at.radio(key="prompts_diff_mode").value == "Side by side"
    assert at.text_area(key="prompts_test_query").value == "I was charged twice"
    assert at.text_area(key="prompts_editor_billing").value == edited


def test_training_keeps_the_tab_the_dataset_and_the_job_settings(app_env):
    at = signed_in_app()
    at.switch_page("views/fine_tuning.py").run()
    assert not at.exception
    at.radio(key="ds_source").set_value("bitext").run()
    at.number_input(key="spec_max_steps").set_value(42).run()
    at.session_state["train_tab"] = "New job"  # what a click on the tab sends
    at.run()

    at = visit_chat_and_come_back(at, "views/fine_tuning.py")
    assert at.radio(key="ds_source").value == "bitext"
    assert at.number_input(key="spec_max_steps").value == 42
    assert at.session_state["train_tab"] == "New job"
