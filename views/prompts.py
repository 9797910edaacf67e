"""Prompts (admin): templates with their production version, editing, history, diff, rollback, test-render."""

from __future__ import annotations

import difflib
import time

import streamlit as st
import yaml

from common.errors import ChatbotError, PromptValidationError, StaleVersionError
from common.wording import plural
from chatbot.store.outcomes import outcome_notice
from chatbot.prompts.library import PromptLibrary, load_variables, parse_template, skeleton
from ui.auth import ADMIN_ONLY, is_admin, require_admin
from ui.page_state import CUSTOMER_TIERS, PROMPTS_WIDGETS, keep_widget_state
from ui.prompt_diff import render_side_by_side
from ui.services import BACKENDS, backend_class, get_backend, get_services
from ui.spending import answering as answer_with

require_admin()

services = get_services()
# The very object the chat renders from: a publish here is used by the next chat turn.
library: PromptLibrary = services.prompts
ss = st.session_state
UNSAVED = "Editor (unsaved)"


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def flash(kind: str, text: str, excerpt: str = "", place: str = "edit") -> None:
    """Keep an action's result for the next run, to show next to the buttons (`place`) that started it."""
    ss["prompts_flash"] = {"kind": kind, "text": text, "excerpt": excerpt, "place": place}


def show_flash(place: str) -> None:
    """The last action's result, if it was started from `place` (edit, history or new)."""
    if message and message.get("place", "edit") == place:
        getattr(st, message["kind"])(message["text"])
        if message["excerpt"]:
            st.code(message["excerpt"], language=None)


def excerpt(text: str, line: int | None, around: int = 2) -> str:
    """The lines around an error, the faulty one marked, so the admin sees it without counting."""
    if not line:
        return ""
    lines = text.splitlines()
    start, end = max(1, line - around), min(len(lines), line + around)
    return "\n".join(f"{'>' if n == line else ' '} {n:>4} | {lines[n - 1]}" for n in range(start, end + 1))


def editor_key(name: str) -> str:
    return f"prompts_editor_{name}"


def base_key(name: str) -> str:
    return f"prompts_base_{name}"


def load_editor(name: str) -> None:
    """Put the latest version's text in the editor (also the version a save is based on)."""
    latest = library.labels(name)["latest"]
    ss[editor_key(name)] = library.version(name, latest).text
    ss[base_key(name)] = latest


# -- actions (callbacks run before the page, so they may reset widgets) -------------------------
def still_admin(place: str) -> bool:
    """Callbacks run before the page's sign-in gate: each change checks the role itself."""
    if is_admin():
        return True
    flash("error", f"Not changed. {ADMIN_ONLY} to edit, publish or roll back prompts.", place=place)
    return False


def save(name: str, publish: bool) -> None:
    if not still_admin("edit"):
        return
    text, base = ss[editor_key(name)], ss[base_key(name)]
    try:
        info = library.save(name, text, author=ss.get("prompts_author", ""), base_version=base,
                            message=ss.get(f"prompts_message_{name}", ""), publish=publish)
    except PromptValidationError as exc:
        flash("error", f"Not saved. {exc}", excerpt(text, exc.line))
    except StaleVersionError as exc:
        flash("error", f"Not saved. {exc}")
    else:
        if info.version == base:
            flash("info", f"No change: v{base} already has this text.")
            return
        ss[base_key(name)] = info.version
        ss[f"prompts_message_{name}"] = ""
        state = "published: the chat uses it from the next message" if publish else "saved as the draft"
        flash("success", f"{name} v{info.version} {state} (sha256 {info.sha256[:12]}).")


def validate(name: str) -> None:
    text = ss[editor_key(name)]
    try:
        template = parse_template(text, expected_name=name)
    except PromptValidationError as exc:
        flash("error", str(exc), excerpt(text, exc.line))
    else:
        flash("success", f"Valid: {plural(len(template.examples), 'example')}, variables "
                         f"{', '.join(template.variables) or 'none'}.")


def set_production(name: str, version: int, rollback: bool, seen: int) -> None:
    if not still_admin("history"):
        return
    try:
        action = library.rollback if rollback else library.publish
        # `seen` is the production this admin was looking at: a move by someone else since is refused.
        previous = action(name, version, author=ss.get("prompts_author", ""), expected=seen)
    except ChatbotError as exc:
        flash("error", str(exc), place="history")
    else:
        flash("success", f"{name}: production is now v{version} (was v{previous}).", place="history")


def create(name: str) -> None:
    if not still_admin("new"):
        return
    try:
        library.save(name, skeleton(name), author=ss.get("prompts_author", ""), base_version=0,
                     message="New template", publish=False)
    except ChatbotError as exc:
        flash("error", str(exc), place="new")
    else:
        ss["prompts_name"] = name
        flash("success", f"Created {name} v1 from a skeleton. The chat uses it only for intents whose "
                         f"template is '{name}'.", place="new")


# -- page -----------------------------------------------------------------------------------------
st.title("Prompts")
st.caption("Every save is a new version. The chat uses each template's production version; "
           "a draft is only tried here until you publish it.")

# Streamlit forgets a widget's value once it is not drawn: this keeps each template's unsaved editor
# text while the admin looks at another template, and every choice here while they visit another page.
keep_widget_state(PROMPTS_WIDGETS)
ss.setdefault("prompts_author", "admin")
with st.sidebar:
    st.text_input("Your name (recorded on changes)", key="prompts_author")

# Shown next to the buttons that started it, below.
message = ss.pop("prompts_flash", None)

rows = library.overview()
st.dataframe(
    [{"template": r["name"], "description": r["description"], "production": f"v{r['production']}",
      "draft": f"v{r['draft']}", "versions": r["versions"], "last change": when(r["updated_at"]),
      "by": r["updated_by"]} for r in rows],
    hide_index=True, width="stretch",
)
names = [r["name"] for r in rows]
if ss.get("prompts_name") not in names:
    ss["prompts_name"] = "general" if "general" in names else names[0]
with st.expander("New template", expanded=bool(message and message.get("place") == "new")):
    new_name = st.text_input("Name", key="prompts_new_name", placeholder="e.g. returns")
    st.button("Create", key="prompts_create", on_click=create, args=(new_name.strip(),), disabled=not new_name.strip())
    show_flash("new")

name = st.selectbox("Template", names, key="prompts_name")
labels = library.labels(name)
if editor_key(name) not in ss:
    load_editor(name)
versions = library.history(name)
by_number = {v.version: v for v in versions}


def version_label(number: int) -> str:
    marks = [k for k in ("production", "draft") if labels.get(k) == number]
    return f"v{number}" + (f" ({', '.join(marks)})" if marks else "")


st.caption(f"**{name}**: production v{labels['production']} · draft v{labels['draft']} · "
           f"{plural(len(versions), 'version')}")
edit_tab, history_tab, diff_tab, test_tab = st.tabs(["Edit", "History", "Diff", "Test"])

with edit_tab:
    base = ss[base_key(name)]
    if base != labels["latest"]:
        newest = by_number[labels["latest"]]
        st.warning(f"v{newest.version} was saved by {newest.author} at {when(newest.created_at)} after you "
                   f"opened v{base}. Saving now is refused; compare in the Diff tab (choose {UNSAVED}), "
                   "then load the latest version and re-apply your change.")
        st.button("Load the latest version (discards the editor's text)", key="prompts_reload",
                  on_click=load_editor, args=(name,))
    st.text_area(f"YAML (editing from v{base})", key=editor_key(name), height=520,
                 help="Variables are written {name} and declared under `variables:`; a literal brace is {{ or }}.")
    st.text_input("Message (what changed and why)", key=f"prompts_message_{name}")
    a, b, c = st.columns(3)
    a.button("Validate", key="prompts_validate", on_click=validate, args=(name,), width="stretch")
    b.button("Save draft", key="prompts_save", on_click=save, args=(name, False), type="primary", width="stretch")
    c.button("Save and publish", key="prompts_save_publish", on_click=save, args=(name, True), width="stretch")
    show_flash("edit")

with history_tab:
    st.dataframe(
        [{"version": version_label(v.version), "message": v.message, "author": v.author,
          "saved": when(v.created_at), "based on": f"v{v.base_version}" if v.base_version else "",
          "sha256": v.sha256[:16]} for v in versions],
        hide_index=True, width="stretch",
    )
    if labels["draft"] != labels["production"]:
        st.button(f"Publish draft v{labels['draft']}", key="prompts_publish", on_click=set_production,
                  args=(name, labels["draft"], False, labels["production"]), type="primary")
    earlier = [v.version for v in versions if v.version < labels["production"]]
    if earlier:
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        target = left.selectbox("Roll production back to", earlier, format_func=version_label,
                                key=f"prompts_rollback_to_{name}")
        right.button("Roll back", key="prompts_rollback", on_click=set_production,
                     args=(name, target, True, labels["production"]),
                     width="stretch")
    show_flash("history")
    with st.expander("Label changes"):
        events = [e for e in library.store.events(name) if e["action"] in ("publish", "rollback")]
        for e in reversed(events):
            st.markdown(f"- {when(e['time'])} **{e['action']}** by {e['author']}: production "
                        f"v{e.get('from')} → v{e['version']}")
        if not events:
            st.caption("Production has not moved since the first version.")

with diff_tab:
    numbers = [v.version for v in versions]
    choices = [*numbers, UNSAVED]
    old_default = labels["production"] if labels["production"] != labels["latest"] else max(1, labels["latest"] - 1)
    left, right, mode_col = st.columns([1, 1, 1])
    # Keyed on the labels: a new draft or a publish brings back the default pair (production against the
    # newest version) instead of keeping a choice made when production was the newest.
    moved = f"{name}_{labels['production']}_{labels['latest']}"
    old = left.selectbox("From", numbers, index=numbers.index(old_default), format_func=version_label,
                         key=f"prompts_diff_from_{moved}")
    new = right.selectbox("To", choices, index=0, key=f"prompts_diff_to_{moved}",
                          format_func=lambda v: v if v == UNSAVED else version_label(v))
    mode = mode_col.radio("View", ["Unified", "Side by side"], horizontal=True, key="prompts_diff_mode")
    old_text = by_number[old].text
    new_text = ss[editor_key(name)] if new == UNSAVED else by_number[new].text
    new_label = "editor" if new == UNSAVED else f"v{new}"
    if old_text == new_text:
        st.info(f"v{old} and {new_label} are identical.")
    elif mode == "Unified":
        st.code("".join(difflib.unified_diff(old_text.splitlines(True), new_text.splitlines(True),
                                             fromfile=f"{name} v{old}", tofile=f"{name} {new_label}")),
                language="diff")
    else:
        render_side_by_side(old_text, new_text, f"v{old}", new_label)

with test_tab:
    options = [UNSAVED, *[v.version for v in versions]]
    default = options.index(labels["draft"])
    source = st.selectbox("Render", options, index=default, key=f"prompts_test_source_{name}",
                          format_func=lambda v: v if v == UNSAVED else version_label(v))
    template = None
    try:
        if source == UNSAVED:
            template, version = parse_template(ss[editor_key(name)], expected_name=name), 0
        else:
            template, version = library.template(name, source), source
    except PromptValidationError as exc:
        st.error(f"The editor's text does not parse. {exc}")
    if template is not None:
        query = st.text_area("Customer message", key="prompts_test_query", height=80,
                             value="I was charged twice for my Nimbus Plus subscription this month. Why?")
        c1, c2 = st.columns(2)
        tier = c1.selectbox("Account tier", CUSTOMER_TIERS, key="prompts_test_tier")
        k = c2.number_input("Passages", min_value=0, max_value=10, value=services.settings.top_k,
                            key="prompts_test_k")
        variables_text = st.text_area(
            "Sample variables (YAML)", key=f"prompts_test_vars_{name}", height=100,
            value=yaml.safe_dump(template.variables, sort_keys=False, allow_unicode=True) if template.variables else "",
        )
        try:
            variables = load_variables(variables_text)  # each value kept as typed, like the template's
        except PromptValidationError as exc:
            st.error(f"Sample variables: {exc}")
            variables = {}
        st.subheader("Live test reply")
        st.caption("The first turn of a new conversation, rendered exactly as the chat would render it; "
                   "not published, not saved in any conversation.")
        b1, b2 = st.columns(2)
        backend_name = b1.selectbox("Backend", BACKENDS, key="prompts_test_backend",
                                    index=BACKENDS.index(services.settings.backend)
                                    if services.settings.backend in BACKENDS else 0)
        model_choice = backend_class(backend_name).model_choice
        model = b2.text_input("Model", value=services.settings.model, key="prompts_test_model",
                              disabled=model_choice != "name")
        # Test replies are held to the same spending limits as the chat, decided in the same place.
        answering = answer_with(lambda: get_backend(backend_name, model if model_choice == "name" else ""))
        if answering.why == "unavailable":
            st.warning(f"{answering.reason} The preview below uses the offline backend.")
        backend = answering.backend
        try:
            preview = services.build_chatbot(backend).preview(
                query, template=template, version=version, customer_tier=tier, variables=variables, top_k=int(k))
        except ChatbotError as exc:
            st.error(str(exc))
            st.stop()
        rendered, passages = preview.prompt, preview.passages
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("Characters", f"{len(rendered.system):,}")
        m2.metric("Passages", len(passages))
        m3.metric("Examples picked", ", ".join(f"#{i + 1}" for i in rendered.examples) or "none")
        m4.metric("Reasoning", "hidden <thinking>" if rendered.chain_of_thought else "off")
        st.caption(f"{'unsaved text' if not version else f'v{version}'} · sha256 {rendered.hash[:16]} · "
                   f"temperature {rendered.temperature} · max tokens {rendered.max_tokens}")
        st.code(rendered.system, language="xml", wrap_lines=True)

        if st.button("Send test message", key="prompts_test_send", disabled=not query.strip()):
            try:
                with st.chat_message("assistant", avatar=":material/science:"):
                    text = st.write_stream(preview.reply)
                ss["prompts_test_reply"] = {"text": text, "reasoning": preview.reply.reasoning,
                                            "backend": backend.name, "template": name,
                                            "version": version or "unsaved",
                                            "notice": outcome_notice(preview.reply.meta)}
            except ChatbotError as exc:
                st.error(f"No test reply: {exc}")
        elif (last := ss.get("prompts_test_reply")) and last["template"] == name:
            with st.chat_message("assistant", avatar=":material/science:"):
                st.markdown(last["text"])
        last = ss.get("prompts_test_reply")
        if last and last["template"] == name:
            if last.get("notice"):  # empty, cut off at the token limit, or refused
                st.warning(last["notice"], icon=":material/chat_error:")
            st.caption(f"Last test reply: {last['backend']} · {name} "
                       f"{'v' if last['version'] != 'unsaved' else ''}{last['version']}")
            if last["reasoning"]:
                with st.expander("Hidden reasoning (never shown to customers)"):
                    st.text(last["reasoning"])
