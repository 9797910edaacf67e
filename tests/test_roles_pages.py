"""Roles through AppTest: every page as an agent and as an admin, the checks on each action's own
code path, the sign-in kept by a cookie, OpenID Connect admins, and the password throttle."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import app_environment

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180  # the first run builds the shared services
PASSWORD = "desk admin pw"
OIDC = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "a" * 32,
                 "client_id": "desk", "client_secret": "s",
                 "server_metadata_url": "https://id.example.com/.well-known/openid-configuration"}}


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    with app_environment(tmp_path_factory.mktemp("roles-app"), CHATBOT_ADMIN_PASSWORD=PASSWORD,
                         CHATBOT_ADMIN_EMAILS="Boss@Example.com, second@example.com") as data:
        yield data


def page(path: str, admin: bool = False, run: bool = True) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=TIMEOUT)
    if admin:
        at.session_state["admin_since"] = time.time()
    return at.run() if run else at


def hints(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if "Admins only: sign in" in c.value]


def errors(at: AppTest) -> str:
    return " ".join(e.value for e in at.error)


@pytest.fixture(scope="module")
def conversation(app_env) -> str:
    """One stored conversation, written by an agent through the chat page."""
    at = page("views/chat.py")
    at.chat_input(key="chat_input").set_value("How do I get a refund?").run()
    assert not at.exception
    return at.session_state["session_id"]


def test_agents_and_admins_both_chat(app_env):
    for admin in (False, True):
        at = page("views/chat.py", admin=admin)
        at.chat_input(key="chat_input").set_value("My parcel never arrived").run()
        assert not at.exception
        assert [m for m in at.chat_message if m.name == "assistant"]


def test_history_agent_reads_and_resumes_but_cannot_export_or_delete(app_env, conversation):
    from ui.services import get_services

    at = page("views/history.py")
    assert not at.exception
    assert at.selectbox(key="history_open").value == conversation
    assert at.chat_message, "an agent reads the conversation"
    assert not at.get("download_button"), "an agent's page carries no export"
    assert at.button(key="history_export_json").disabled and at.button(key="history_export_md").disabled
    assert at.button(key="history_delete").disabled and hints(at)
    assert not at.button(key="history_resume").disabled

    at = page("views/history.py", admin=True)
    assert {b.label for b in at.get("download_button")} == {"Export JSON", "Export Markdown", "Export CSV",
                                                          "Export list CSV"}
    assert not at.button(key="history_delete").disabled and not hints(at)
    # The button is only a hint: the delete's own code path checks the role. Here the sign-in
    # ends between the question and the answer.
    at.button(key="history_delete").click().run()
    assert any("for good?" in w.value for w in at.warning)
    del at.session_state["admin_since"]
    at.button(key="history_delete_confirm").click().run()
    assert "Admins only: sign in to delete conversations" in errors(at)
    assert get_services().store.exists(conversation)


def test_knowledge_agent_reads_and_searches_but_cannot_change_it(app_env):
    from ui.services import get_services

    kb = get_services().knowledge
    before = [d.doc_id for d in kb.documents()]
    at = page("views/knowledge_base.py")
    assert not at.exception and before
    assert at.button(key="kb_ingest").disabled and at.button(key="kb_delete").disabled
    assert at.button(key="kb_reindex").disabled and at.number_input(key="kb_chunk_size").disabled
    assert hints(at)
    at.text_input(key="kb_query").input("parcel never arrived").run()
    assert any("score" in m.value for m in at.markdown), "test search is open to agents"

    at = page("views/knowledge_base.py", admin=True)
    assert not at.button(key="kb_ingest").disabled and not at.button(key="kb_delete").disabled
    assert not at.button(key="kb_reindex").disabled and not hints(at)
    # The delete and re-index code paths check the role themselves: the sign-in ends mid-way.
    at.button(key="kb_delete").click().run()
    del at.session_state["admin_since"]
    at.button(key="kb_delete_confirm").click().run()
    assert "Admins only: sign in to upload, delete or re-index documents" in errors(at)
    at.session_state["admin_since"] = time.time()
    at.run()
    del at.session_state["admin_since"]
    at.button(key="kb_reindex").click().run()
    assert "kb_job" not in at.session_state
    assert [d.doc_id for d in kb.documents()] == before


def test_stats_is_open_to_both(app_env, conversation):
    for admin in (False, True):
        at = page("views/stats.py", admin=admin)
        assert not at.exception and at.title[0].value == "Stats"


@pytest.mark.parametrize("path, title", [("views/prompts.py", "Prompts"), ("views/fine_tuning.py", "Training")])
def test_admin_pages_show_agents_the_sign_in_only(app_env, path, title):
    at = page(path)
    assert not at.exception
    assert at.subheader[0].value == "Admin sign-in" and not at.title
    at = page(path, admin=True)
    assert not at.exception and at.title[0].value == title


def test_a_prompt_change_from_an_expired_sign_in_is_refused(app_env):
    from ui.services import get_services

    library = get_services().prompts
    before = len(library.history("general"))
    at = page("views/prompts.py", admin=True)
    at.selectbox(key="prompts_name").select("general").run()
    editor = at.text_area(key="prompts_editor_general")
    editor.input(editor.value + "\n# a change\n").run()
    del at.session_state["admin_since"]  # the sign-in ended while the page was open
    at.button(key="prompts_save_publish").click().run()
    assert len(library.history("general")) == before
    assert at.subheader[0].value == "Admin sign-in"


def test_the_app_shows_the_role_and_signs_in_and_out_from_the_sidebar(app_env):
    at = page("app.py")
    assert any(c.value.startswith(":material/support_agent: Agent") for c in at.sidebar.caption)
    at.text_input(key="account_password_input").input(PASSWORD)
    at.button(key="account_unlock").click().run()
    assert not at.exception
    assert any("Admin · admin" in c.value for c in at.sidebar.caption)
    assert any(h.proto.unsafe_allow_javascript and "chatbot_admin=" in h.proto.body for h in at.get("html"))
    at.switch_page("views/prompts.py").run()
    assert at.title[0].value == "Prompts"
    at.sidebar.button(key="account_sign_out").click().run()
    assert any(c.value.startswith(":material/support_agent: Agent") for c in at.sidebar.caption)
    assert any("Max-Age=0" in h.proto.body for h in at.get("html"))  # the cookie is cleared
    assert at.subheader[0].value == "Admin sign-in"


def test_a_refresh_keeps_the_sign_in_through_the_cookie_until_signed_out(app_env, monkeypatch):
    import ui.auth
    from ui.services import get_session_tokens

    token, sid = get_session_tokens().issue("admin", "password")
    monkeypatch.setattr(ui.auth, "_read_cookie", lambda: token)  # what the browser connects with
    at = page("views/prompts.py")  # a new session, as after a refresh
    assert not at.exception and at.title[0].value == "Prompts"
    get_session_tokens().revoke(sid)  # signed out (in another tab)
    at = page("views/prompts.py")
    assert at.subheader[0].value == "Admin sign-in"
    assert any("Max-Age=0" in h.proto.body for h in at.get("html"))  # the dead cookie is dropped
    monkeypatch.setattr(ui.auth, "_read_cookie", lambda: token[:-3] + "abc")
    assert page("views/prompts.py").subheader[0].value == "Admin sign-in"  # forged


def test_open_id_connect_admins_come_from_the_setting(app_env):
    at = page("views/prompts.py", run=False)
    at.secrets, at.user = OIDC, {"is_logged_in": True, "email": "boss@example.com"}
    at.run()
    assert not at.exception and at.title[0].value == "Prompts"

    at = page("views/prompts.py", run=False)
    at.secrets, at.user = OIDC, {"is_logged_in": True, "email": "agent@example.com"}
    at.run()
    assert at.subheader[0].value == "Admin sign-in"
    assert any("not an admin account" in w.value for w in at.warning)
    assert not at.text_input, "no password form when admins sign in with their account"

    at = page("views/prompts.py", admin=True, run=False)  # a password session does not count then
    at.secrets, at.user = OIDC, {"is_logged_in": False}
    at.run()
    assert at.subheader[0].value == "Admin sign-in"
    assert at.button(key="admin_oidc_sign_in").label == "Sign in with your account"


def test_wrong_passwords_slow_one_session_and_not_another(app_env):
    guesser = page("views/prompts.py")
    messages = []
    for _ in range(4):
        guesser.text_input(key="admin_password_input").input("guess")
        guesser.button(key="admin_unlock").click().run()
        messages.append(errors(guesser))
    assert messages[:2] == ["Wrong password.", "Wrong password."]
    assert messages[2] == "Wrong password. Try again in 2 seconds."
    # Still waiting: even the right password is not checked.
    assert "Try again in" in messages[3]
    guesser.text_input(key="admin_password_input").input(PASSWORD)
    guesser.button(key="admin_unlock").click().run()
    assert guesser.subheader[0].value == "Admin sign-in"
    # Another admin's browser session signs in at once: the guesses were not counted against it.
    other = page("views/prompts.py")
    other.text_input(key="admin_password_input").input(PASSWORD)
    other.button(key="admin_unlock").click().run()
    assert other.title[0].value == "Prompts"


def test_a_global_cap_pauses_the_password_form_for_everyone(app_env):
    from limits import RateLimitItemPerSecond

    from ui.services import get_auth

    throttle = get_auth().throttle
    usual, throttle.everyone = throttle.everyone, RateLimitItemPerSecond(3, 120)
    try:
        for _ in range(3):  # a new session for every guess
            at = page("views/prompts.py")
            at.text_input(key="admin_password_input").input("guess")
            at.button(key="admin_unlock").click().run()
        at = page("views/prompts.py")
        at.text_input(key="admin_password_input").input(PASSWORD)
        at.button(key="admin_unlock").click().run()
        assert "paused for everyone" in errors(at)
        assert page("views/prompts.py", admin=True).title[0].value == "Prompts"  # signed-in admins carry on
    finally:
        throttle.reopen()
        throttle.everyone = usual


def test_signing_out_in_one_tab_ends_the_sign_in_in_every_tab_and_browser(app_env, monkeypatch):
    import re

    import ui.auth
    from ui.services import get_services

    first = page("app.py")  # tab 1 signs in with the password
    first.text_input(key="account_password_input").input(PASSWORD)
    first.button(key="account_unlock").click().run()
    token = next(re.search(r"chatbot_admin=([^;]+);", h.proto.body).group(1)
                 for h in first.get("html") if "chatbot_admin=" in h.proto.body)
    monkeypatch.setattr(ui.auth, "_read_cookie", lambda: token)  # what the other tabs connect with
    second = page("views/prompts.py")  # tab 2 of the same browser
    other_browser = page("views/knowledge_base.py")  # the cookie copied into another browser
    assert second.title[0].value == "Prompts" and not other_browser.button(key="kb_ingest").disabled

    library = get_services().prompts
    before = len(library.history("general"))
    second.selectbox(key="prompts_name").select("general").run()
    editor = second.text_area(key="prompts_editor_general")
    editor.input(editor.value + "\n# changed in tab 2\n").run()

    first.sidebar.button(key="account_sign_out").click().run()  # tab 1 signs out
    second.button(key="prompts_save_publish").click().run()  # tab 2's next action
    assert len(library.history("general")) == before
    assert second.subheader[0].value == "Admin sign-in"
    other_browser.run()  # the other browser's next run
    assert other_browser.button(key="kb_ingest").disabled and hints(other_browser)
    assert not any("Admin · admin" in c.value for c in other_browser.sidebar.caption)


def test_an_account_sign_out_ends_that_account_in_its_other_tabs_and_browsers(app_env):
    signed_in_at = time.time() - 60
    tabs = []
    for _ in range(2):
        at = page("views/prompts.py", run=False)
        at.secrets, at.user = OIDC, {"is_logged_in": True, "email": "boss@example.com", "iat": int(signed_in_at)}
        tabs.append(at.run())
    first, second = tabs
    assert second.title[0].value == "Prompts"
    first.sidebar.button(key="admin_sign_out").click().run()  # st.logout in tab 1
    assert not first.exception
    second.run()  # the other tab's next run: its identity cookie is still the old one
    assert second.subheader[0].value == "Admin sign-in"
    assert any("signed out" in i.value for i in second.info)
    # A new sign-in of the account (a later ID token) is an admin again.
    again = page("views/prompts.py", run=False)
    again.secrets, again.user = OIDC, {"is_logged_in": True, "email": "boss@example.com", "iat": int(time.time()) + 1}
    assert again.run().title[0].value == "Prompts"
