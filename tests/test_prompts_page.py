"""The Prompts admin page through AppTest: access, editing, validation, stale saves, diff, rollback, test-render."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import app_environment

from chatbot.prompts.library import PromptLibrary
from devtools.servers.openai import OpenAIServer
from ui.services import get_services

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "views" / "prompts.py")
TIMEOUT = 180  # the first run builds the shared services (embedding model, demo knowledge base)


@pytest.fixture(scope="module")
def app_env(tmp_path_factory, embedder):
    """One data directory and one set of cached services for the module, like one server."""
    # An OpenAI-protocol server for the live test reply on an API backend, scripted per test.
    with OpenAIServer("Refunds reach your card within", finish="length") as server, app_environment(
        tmp_path_factory.mktemp("prompts-app"), CHATBOT_ADMIN_PASSWORD="s3cret admin",
        OPENAI_API_KEY="sk-test-prompts", OPENAI_BASE_URL=server.base_url, CHATBOT_MAX_RETRIES="0",
    ) as data:
        yield data


def admin_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["admin_since"] = time.time()  # signed in (the sign-in itself is tested below)
    return at.run()


def library() -> PromptLibrary:
    return get_services().prompts  # the object the chat uses


def pick(at: AppTest, name: str) -> AppTest:
    at.selectbox(key="prompts_name").select(name).run()
    assert not at.exception
    return at


def test_locked_without_the_password_open_with_it_and_the_chat_stays_open(app_env):
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.subheader[0].value == "Admin sign-in"
    assert not at.text_area and not at.dataframe  # nothing of the page before the password
    # Inside a form, a typed value is sent with the submit click (no run in between).
    at.text_input(key="admin_password_input").input("guess")
    at.button(key="admin_unlock").click().run()
    assert any("Wrong password" in e.value for e in at.error) and not at.text_area
    at.text_input(key="admin_password_input").input("s3cret admin")
    at.button(key="admin_unlock").click().run()
    assert not at.exception
    assert at.title[0].value == "Prompts"
    listed = at.dataframe[0].value
    assert set(listed["template"]) >= {"billing", "technical", "account", "general", "escalation", "summariser",
                                       "classifier"}
    chat = AppTest.from_file(str(ROOT / "views" / "chat.py"), default_timeout=TIMEOUT).run()
    assert not chat.exception and chat.title[0].value == "Support chat"


def test_invalid_yaml_shows_its_line_saves_nothing_and_keeps_the_text(app_env):
    at = pick(admin_page(), "billing")
    before = len(library().history("billing"))
    editor = at.text_area(key="prompts_editor_billing")
    bad = editor.value.replace("Calm, precise", "Calm, {mood} precise")
    line = next(n for n, text in enumerate(bad.splitlines(), 1) if "{mood}" in text)
    editor.input(bad).run()
    at.text_input(key="prompts_message_billing").input("Moodier tone").run()
    at.button(key="prompts_save").click().run()
    assert not at.exception
    error = at.error[0].value
    assert error.startswith(f"Not saved. Line {line}:") and "unknown variable {mood}" in error
    assert any(f">{line:>5} |" in c.value for c in at.code)  # the faulty line, marked
    assert at.text_area(key="prompts_editor_billing").value == bad
    assert len(library().history("billing")) == before
    # A YAML syntax error is reported the same way.
    at.text_area(key="prompts_editor_billing").input(bad.replace("invoices]", "invoices")).run()
    at.button(key="prompts_validate").click().run()
    assert "YAML syntax error" in at.error[0].value and "Line " in at.error[0].value


def test_save_publish_and_the_next_chat_turn_uses_it(app_env):
    at = pick(admin_page(), "general")
    start = library().labels("general")["latest"]
    editor = at.text_area(key="prompts_editor_general")
    editor.input(editor.value.replace("Warm, concise and professional.", "Warm, brief and professional.")).run()
    at.text_input(key="prompts_message_general").input("Briefer tone").run()
    at.button(key="prompts_save").click().run()
    assert not at.exception
    assert f"general v{start + 1} saved as the draft" in at.success[0].value
    assert library().get("general")[1] != start + 1  # a draft is not live
    at.text_input(key="prompts_message_general").input("Briefer tone").run()
    at.button(key="prompts_publish").click().run()
    assert f"production is now v{start + 1}" in at.success[0].value
    row = list(at.dataframe[0].value["template"]).index("general")
    assert at.dataframe[0].value["production"][row] == f"v{start + 1}"

    chat = AppTest.from_file(str(ROOT / "views" / "chat.py"), default_timeout=TIMEOUT).run()
    # A greeting routes to the general template.
    chat.chat_input(key="chat_input").set_value("Hello there!").run()
    assert not chat.exception
    assert any(f"prompt general v{start + 1}" in c.value for c in chat.caption)


def test_a_second_admins_stale_save_is_refused_and_keeps_the_text(app_env):
    ana, ben = pick(admin_page(), "account"), pick(admin_page(), "account")
    base = library().labels("account")["latest"]
    for at, words, who in ((ben, "Reassuring, careful", "ben"), (ana, "Reassuring and very careful", "ana")):
        at.sidebar.text_input(key="prompts_author").input(who).run()
        editor = at.text_area(key="prompts_editor_account")
        editor.input(editor.value.replace("Reassuring and careful", words)).run()
        at.text_input(key="prompts_message_account").input(f"{who}'s change").run()
    ben.button(key="prompts_save").click().run()
    assert f"account v{base + 1} saved" in ben.success[0].value
    ana_text = ana.text_area(key="prompts_editor_account").value
    ana.button(key="prompts_save").click().run()
    assert not ana.exception
    assert f"saved as v{base + 1} by ben" in ana.error[0].value and "your text is kept" in ana.error[0].value
    assert ana.text_area(key="prompts_editor_account").value == ana_text
    assert any(f"v{base + 1} was saved by ben" in w.value for w in ana.warning)
    assert [v.author for v in library().history("account")][:1] == ["ben"]
    # Ana compares her text with Ben's version before reloading.
    ana.selectbox(key=diff_key("to", "account")).select("Editor (unsaved)").run()
    ana.selectbox(key=diff_key("from", "account")).select(base + 1).run()
    diff = next(c.value for c in ana.code if c.language == "diff")
    assert "-    Reassuring, careful" in diff and "+    Reassuring and very careful" in diff


def diff_key(side: str, template: str) -> str:
    """The Diff tab's From/To selectbox: keyed on the template's production and newest versions."""
    labels = library().labels(template)
    return f"prompts_diff_{side}_{template}_{labels['production']}_{labels['latest']}"


def test_the_diff_shows_production_against_a_new_draft_not_production_against_itself(app_env):
    template = "technical"
    production = library().labels(template)["production"]
    at = pick(admin_page(), template)
    at.selectbox(key=diff_key("to", template)).select(production).run()  # the diff looked at, as it was
    key = f"prompts_editor_{template}"
    at.text_area(key=key).input(at.text_area(key=key).value.replace("description: ", "description: Edited. ", 1)).run()
    at.text_input(key=f"prompts_message_{template}").input("Say it was edited").run()
    at.button(key="prompts_save").click().run()
    assert not at.exception, at.exception
    labels = library().labels(template)
    assert labels["draft"] == production + 1 and labels["production"] == production
    assert at.selectbox(key=diff_key("from", template)).value == production
    assert at.selectbox(key=diff_key("to", template)).value == labels["draft"]
    assert not any("are identical" in i.value for i in at.info)
    diff = next(c.value for c in at.code if c.language == "diff")
    assert f"{template} v{production}" in diff and f"{template} v{labels['draft']}" in diff and "+" in diff


def test_history_diff_and_rollback(app_env):
    lib = library()
    template = "escalation"
    base = lib.labels(template)["latest"]
    text = lib.version(template, base).text.replace("Calm, respectful and brief.", "Calm and brief.")
    lib.save(template, text, author="ops", message="Shorter", base_version=base, publish=True)
    at = pick(admin_page(), template)
    history = at.dataframe[1].value
    assert list(history["message"])[:1] == ["Shorter"] and list(history["author"])[:1] == ["ops"]
    assert history["version"][0] == f"v{base + 1} (production, draft)"
    at.selectbox(key=diff_key("from", template)).select(base).run()
    at.selectbox(key=diff_key("to", template)).select(base + 1).run()
    diff = next(c.value for c in at.code if c.language == "diff")
    assert "-    Calm, respectful and brief." in diff and "+    Calm and brief." in diff
    at.radio(key="prompts_diff_mode").set_value("Side by side").run()
    assert not at.exception

    at.selectbox(key=f"prompts_rollback_to_{template}").select(base).run()
    at.button(key="prompts_rollback").click().run()
    assert f"production is now v{base} (was v{base + 1})" in at.success[0].value
    assert lib.get(template)[1] == base
    assert len(lib.history(template)) == base + 1  # nothing deleted


def test_test_render_shows_passages_examples_and_a_live_reply_without_publishing(app_env):
    at = pick(admin_page(), "billing")
    query = "I was charged twice for the same order, how do I get my money back?"
    at.text_area(key="prompts_test_query").input(query).run()
    at.selectbox(key="prompts_test_tier").select("plus").run()
    assert not at.exception
    system = next(c.value for c in at.code if c.language == "xml")
    assert '<passage id="1"' in system and "Account tier: plus" in system
    assert "Customer: I was charged twice for my order this month!" in system  # the closest example
    # The editor's unsaved text renders too, and is what the live reply is sent with.
    editor = at.text_area(key="prompts_editor_billing")
    editor.input(editor.value.replace("Calm, precise", "UNSAVED-TONE, precise")).run()
    at.selectbox(key="prompts_test_source_billing").select("Editor (unsaved)").run()
    assert "UNSAVED-TONE" in next(c.value for c in at.code if c.language == "xml")
    production_before = library().get("billing")[1]
    at.button(key="prompts_test_send").click().run()
    assert not at.exception
    reply = [m for m in at.chat_message if m.name == "assistant"]
    assert reply and "Offline mode" in reply[-1].markdown[0].value
    assert library().get("billing")[1] == production_before
    assert "UNSAVED-TONE" not in library().version("billing").text


def test_unsaved_text_survives_looking_at_another_template_and_new_templates_start_at_v1(app_env):
    at = pick(admin_page(), "technical")
    editor = at.text_area(key="prompts_editor_technical")
    changed = editor.value.replace("Patient and practical.", "Patient, practical and upbeat.")
    editor.input(changed).run()
    pick(at, "handoff")
    assert "Patient" not in at.text_area(key="prompts_editor_handoff").value
    pick(at, "technical")
    assert at.text_area(key="prompts_editor_technical").value == changed

    at.text_input(key="prompts_new_name").input("returns").run()
    at.button(key="prompts_create").click().run()
    assert not at.exception and "Created returns v1" in at.success[0].value
    assert at.selectbox(key="prompts_name").value == "returns"
    assert "name: returns" in at.text_area(key="prompts_editor_returns").value
    assert library().version("returns", 1).author == "admin"
    at.text_input(key="prompts_new_name").input("returns").run()
    at.button(key="prompts_create").click().run()
    assert "already exists" in at.error[0].value


def just_after(tab, key: str):
    """The element a tab shows right after the button `key` (or the columns holding it)."""
    children = list(tab.children.values())
    index = next(i for i, c in enumerate(children)
                 if getattr(c, "key", None) == key or key in [b.key for b in getattr(c, "button", [])])
    return children[index + 1]


def test_save_and_validate_results_appear_next_to_their_buttons(app_env):
    from tests.test_prompt_yaml import BILLION_LAUGHS

    at = pick(admin_page(), "billing")
    editor, original = at.text_area(key="prompts_editor_billing"), at.text_area(key="prompts_editor_billing").value
    at.button(key="prompts_validate").click().run()
    result = just_after(at.tabs[0], "prompts_validate")
    assert result.type == "success" and result.value.startswith("Valid:")
    assert not [e for e in at.main.children.values() if e.type in ("success", "error")]  # not at the page top

    # A hostile text is refused at once, by name, in the same place.
    editor.input(BILLION_LAUGHS).run()
    at.button(key="prompts_validate").click().run()
    result = just_after(at.tabs[0], "prompts_validate")
    assert result.type == "error" and "anchors and aliases ('&a') are not allowed" in result.value

    # A setting that is not its type: not saved, told where and how to fix it.
    mistyped = original.replace("temperature: 0.2", "temperature: 0,2")
    at.text_area(key="prompts_editor_billing").input(mistyped).run()
    at.text_input(key="prompts_message_billing").input("Cooler").run()
    at.button(key="prompts_save").click().run()
    result = just_after(at.tabs[0], "prompts_save")
    line = next(n for n, text in enumerate(mistyped.splitlines(), 1) if "0,2" in text)
    assert result.type == "error" and result.value.startswith(f"Not saved. Line {line}: 'model.temperature' must be")

    # Publishing from the History tab answers there.
    lib = library()
    lib.save("billing", original.replace("Calm, precise", "Calm and precise"), author="ops", message="calmer",
             base_version=lib.labels("billing")["latest"])
    at = pick(admin_page(), "billing")
    at.button(key="prompts_publish").click().run()
    assert "production is now" in at.tabs[1].success[0].value and not at.tabs[0].success


def test_variables_reach_the_prompt_as_typed(app_env):
    at = pick(admin_page(), "general")
    editor = at.text_area(key="prompts_editor_general")
    text = editor.value.replace("variables:\n", "variables:\n  opens_at: 9:30\n  app_version: 2.10\n", 1).replace(
        "  role: |\n", "  role: |\n    Lines open at {opens_at}; the app is version {app_version}.\n", 1)
    editor.input(text).run()
    at.selectbox(key="prompts_test_source_general").select("Editor (unsaved)").run()
    assert not at.exception
    assert "Lines open at 9:30; the app is version 2.10." in next(c.value for c in at.code if c.language == "xml")
    # Sample values typed in the Test tab are kept as typed too.
    at.text_area(key="prompts_test_vars_general").input("opens_at: 10:45\napp_version: 3.0\n").run()
    assert "Lines open at 10:45; the app is version 3.0." in next(c.value for c in at.code if c.language == "xml")


def test_a_test_reply_cut_off_at_the_token_limit_says_so(app_env):
    at = pick(admin_page(), "billing")
    at.text_area(key="prompts_test_query").input("How long does a refund take?").run()
    at.selectbox(key="prompts_test_backend").select("openai").run()
    at.button(key="prompts_test_send").click().run()
    assert not at.exception
    assert any("cut off at the token limit" in w.value for w in at.warning)
