"""The conversation id in the Chat page's link (`?c=`): only ids the store makes, or ones it holds, are opened."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from chatbot.store.conversations import ID_FORM, ConversationStore
from tests.conftest import app_environment

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120  # the first run loads the embedding model and seeds the demo knowledge base
NOTICE = "a new conversation was started instead"


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    with app_environment(tmp_path_factory.mktemp("link-data")) as data:
        yield data


def stored_ids() -> set[str]:
    from ui.services import get_services

    return set(get_services().store.recent(1000))


def chat_opened_with(link_id: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "views/chat.py"), default_timeout=TIMEOUT)
    at.query_params["c"] = link_id
    return at.run()


def test_new_ids_have_the_accepted_form(store):
    ids = {ConversationStore.new_id() for _ in range(50)}
    assert len(ids) == 50 and all(ID_FORM.fullmatch(i) for i in ids)
    assert store.accepts(ConversationStore.new_id())  # a fresh id, not stored yet: a new conversation
    for bad in ("*", "../../etc/passwd", "a/b", "x" * 5000, "", "ABCDEF0123456789", "0123456789abcdef0"):
        assert not store.accepts(bad), bad
    store.append("refund1", [{"role": "user", "content": "hi"}])  # stored before ids were checked
    assert store.accepts("refund1")


@pytest.mark.parametrize("link_id", ["*", "../../etc/passwd", "x" * 5000, "chatbot:conv:x:messages"])
def test_a_link_with_an_invalid_id_opens_a_fresh_conversation_and_stores_nothing_under_it(app_env, link_id):
    at = chat_opened_with(link_id)
    assert not at.exception
    assert any(NOTICE in w.value for w in at.warning)
    fresh = at.session_state["session_id"]
    assert ID_FORM.fullmatch(fresh) and "c" not in at.query_params  # the bad id left the link

    at.chat_input(key="chat_input").set_value("How do I get a refund?").run()
    assert not at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    ids = stored_ids()
    assert link_id not in ids and fresh in ids
    assert at.query_params["c"] == fresh  # stored now: a refresh resumes it


def test_a_link_to_a_stored_id_opens_it_without_a_notice(app_env):
    from ui.services import get_services

    get_services().store.append("legacy-7", [{"role": "user", "content": "Where is my parcel?"}])
    at = chat_opened_with("legacy-7")
    assert not at.exception and not at.warning
    assert at.session_state["session_id"] == "legacy-7"
    assert [m.name for m in at.chat_message] == ["user"]


def test_a_made_up_well_formed_id_says_not_found_and_offers_a_new_conversation(app_env):
    made_up = ConversationStore.new_id()
    at = chat_opened_with(made_up)
    assert not at.exception and not at.chat_message
    assert any(f"Conversation {made_up} was not found" in w.value for w in at.warning)
    at.button(key="link_new_conversation").click().run()
    assert not at.exception and not at.warning
    fresh = at.session_state["session_id"]
    assert fresh != made_up and ID_FORM.fullmatch(fresh) and "c" not in at.query_params


def test_a_new_conversation_reaches_the_link_with_its_first_message_so_a_refresh_never_says_not_found(app_env):
    at = AppTest.from_file(str(ROOT / "views/chat.py"), default_timeout=TIMEOUT).run()
    assert not at.exception and "c" not in at.query_params and not at.warning
    at.chat_input(key="chat_input").set_value("Where is my parcel?").run()
    session = at.session_state["session_id"]
    assert at.query_params["c"] == session
    refreshed = chat_opened_with(session)  # a refresh: a new browser session on the same link
    assert not refreshed.exception and not refreshed.warning
    assert [m.name for m in refreshed.chat_message] == ["user", "assistant"]


def test_whitespace_only_messages_say_nothing_was_sent_and_store_nothing(app_env):
    at = AppTest.from_file(str(ROOT / "views/chat.py"), default_timeout=TIMEOUT).run()
    at.chat_input(key="chat_input").set_value("   \n\t  ").run()
    assert not at.exception and not at.chat_message
    assert any("Nothing was sent: the message was empty" in w.value for w in at.warning)
    assert at.session_state["session_id"] not in stored_ids()
