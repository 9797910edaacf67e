"""Chat: the agent's conversation with the assistant, streamed and cited."""

from __future__ import annotations

import streamlit as st

from chatbot.handoff.status import as_shown
from common.errors import BackendError, ChatbotError, InputRejected, StoreUnavailable
from chatbot.store.messages import turn_meta
from common.wording import plural
from chatbot.store.stats import conversation_stats
from ui.chat_view import render_handoff, render_message, render_stats
from ui.feedback import render_feedback
from ui.knowledge_jobs import search_notice
from ui.local_models import BUNDLED_LABEL, BUNDLED_MODEL, is_bundled, prepare_local_model
from ui.page_state import CUSTOMER_TIERS, LOCAL_FOLDER, ChatKeys, current_conversation, start_new_conversation
from ui.services import BACKENDS, backend_class, get_backend, get_services
from ui.spending import answering as answer_with
from ui.turn_state import (cannot_answer, clear_unsent, keep_unsent, pending_turn, queued, render_fallback,
                           render_resend, render_unsent, set_aside, set_aside_reason, unanswered, watch_pending)

services = get_services()
settings = services.settings
store = services.store

session_id = current_conversation(store)  # from the URL (checked), so a refresh resumes it

# -- sidebar: backend picker, stats, reset ---------------------------------------------
# Defaults go through session state, so that other pages (Training's "Chat with this adapter")
# can preset the same keys before switching here.
# The backend picked lives in the URL too (`?backend=`), so a refresh keeps it.
default_backend = settings.backend if settings.backend in BACKENDS else "offline"
linked_backend = st.query_params.get("backend")
for key, value in ((ChatKeys.BACKEND, linked_backend if linked_backend in BACKENDS else default_backend),
                   (ChatKeys.MODEL, settings.model), (ChatKeys.LOCAL_MODEL_PATH, settings.local_model_path),
                   (ChatKeys.LOCAL_ADAPTER_PATH, settings.local_adapter_path)):
    st.session_state.setdefault(key, value)
# The bundled model needs no setting: it is the Local backend's choice unless a folder is set (in the
# settings, or by the page that sent the agent here).
folder = st.session_state[ChatKeys.LOCAL_MODEL_PATH]
st.session_state.setdefault(ChatKeys.LOCAL_MODEL_CHOICE,
                            LOCAL_FOLDER if folder and not is_bundled(folder) else BUNDLED_MODEL)

st.title("Support chat")
# Why the chosen backend cannot answer (or is over a spending limit) goes here, above the chat where the
# agent is looking: at the end of a long sidebar it was out of view.
backend_notices = st.container()

with st.sidebar:
    backend_name = st.selectbox(
        "Backend", BACKENDS, key=ChatKeys.BACKEND,
        help="Offline answers from the knowledge base with no model or key.",
    )
    model_choice = backend_class(backend_name).model_choice
    model = st.text_input("Model", key=ChatKeys.MODEL, help="Blank uses the backend's default model.") \
        if model_choice == "name" else ""
    model_path = adapter_path = ""
    if model_choice == "folder":
        choice = st.selectbox("Local model", (BUNDLED_MODEL, LOCAL_FOLDER), key=ChatKeys.LOCAL_MODEL_CHOICE,
                              format_func={BUNDLED_MODEL: BUNDLED_LABEL, LOCAL_FOLDER: "A model folder…"}.get)
        model_path = BUNDLED_MODEL if choice == BUNDLED_MODEL \
            else st.text_input("Local model folder", key=ChatKeys.LOCAL_MODEL_PATH)
        adapter_path = st.text_input("LoRA adapter folder (optional)", key=ChatKeys.LOCAL_ADAPTER_PATH)
    tier = st.selectbox("Customer tier", CUSTOMER_TIERS, key=ChatKeys.CUSTOMER_TIER,
                        help="Weighs into the priority score; the assistant sees it too.")
    agent = st.text_input("Agent", key=ChatKeys.AGENT, placeholder="Your name",
                          help="Conversations are indexed by agent in History.")
    if st.button("New conversation", icon=":material/add_comment:", width="stretch", key="new_conversation"):
        start_new_conversation(store)
        st.rerun()
    stats_box = st.container()
    if notice := search_notice(services.knowledge):
        st.warning(notice, icon=":material/manage_search:")
if backend_name == default_backend:
    st.query_params.pop("backend", None)
else:
    st.query_params["backend"] = backend_name

# Every backend that cannot answer (a missing key, a folder that is not a model, no server, a
# refused key) says why above the conversation, and the offline backend answers meanwhile.
choice = (backend_name, model, model_path, adapter_path)


def build_backend():
    path = prepare_local_model(model_path, settings.data_dir) if model_choice == "folder" else model_path
    return get_backend(backend_name, model, path, adapter_path)  # the bundled model: converted once


# Which backend answers is decided in one place for every page: the chosen one, metered (each API
# call it makes is held against the spending limits), or the offline one when it cannot answer.
answering = answer_with(build_backend, session_id, set_aside=set_aside_reason(choice), where=backend_notices)
if answering.why == "unavailable":
    render_fallback(backend_name, answering.reason, retry=bool(set_aside_reason(choice)), where=backend_notices)
bot = services.build_chatbot(answering.backend)

# -- conversation ------------------------------------------------------------------------
try:
    messages = store.messages(session_id)
    state = store.state(session_id) if messages else {}
except StoreUnavailable as exc:
    st.error(f"{exc} A message you send now is kept as a draft, to send again when it is back.")
    messages, state = [], {}

if not messages:
    st.caption("Ask anything a customer might ask: refunds, billing, passwords, devices, shipping, privacy.")
triage_state = state.get("triage") or {}
if triage_state.get("escalated"):
    render_handoff(triage_state)
memory_state = state.get("memory") or {}
if memory_state.get("summarised_count"):
    st.info(
        f"{plural(memory_state['summarised_count'], 'older message')} {'was' if memory_state['summarised_count'] == 1 else 'were'} summarised to keep the context short; "
        "the assistant sees that summary plus the recent messages.", icon=":material/psychology:",
    )
    with st.expander("Summary of older messages"):
        st.markdown(memory_state.get("summary", ""))
for index, message in enumerate(as_shown(messages)):  # answered messages no longer wait for a person
    feedback = (lambda i=index, m=message: render_feedback(store, session_id, i, m)) \
        if not message.is_user and not message.is_handoff_notice else None
    # A customer message's triage is stored with the turn: on the reply, or on the message itself.
    render_message(message, turn_meta(messages, index), feedback)


def send(text: str, again: str = "") -> None:
    """Run one turn on the page. The message is stored before the reply streams; one that could not be
    sent at all is kept as a draft to send again."""
    try:
        reply = bot.send(session_id, text, customer={"tier": tier}, agent=agent, again=again)
    except InputRejected as exc:
        keep_unsent(text, f"{exc} Your message is kept below.")
        return
    except StoreUnavailable as exc:
        keep_unsent(text, f"{exc} Your message was not sent; it is kept below to send again.")
        return
    except ChatbotError:
        # Stored when it was sent, with why it got no reply: the rerun shows it with "Send it again".
        clear_unsent()
        st.rerun()
    clear_unsent()
    if reply is None:  # only spaces or line breaks: nothing to send, and nothing stored
        st.warning("Nothing was sent: the message was empty (only spaces or line breaks).",
                   icon=":material/edit_off:")
        return
    # The message is stored: its conversation joins the URL now, before the reply streams, so a tab
    # closed mid-reply can be reopened from its address.
    st.query_params["c"] = session_id
    if not again:  # a message sent again is on the page already: no second bubble while the reply streams
        with st.chat_message("user", avatar=":material/person:"):
            st.text(reply.user_text)  # as typed, never read as Markdown
    with st.chat_message("assistant", avatar=":material/support_agent:"):
        stream = iter(reply)
        try:
            st.write_stream(stream)
        except BackendError as exc:
            if not reply.text and cannot_answer(exc):
                set_aside(choice, str(exc))  # the offline backend answers until it is tried again
            st.error(f"No reply: {exc} Your message is kept; send it again.")
        except StoreUnavailable as exc:
            # The message was stored when it was sent; the reply could not be. Offer to send it again.
            keep_unsent(text, f"{exc} The reply could not be saved; your message is kept, below, to send again.")
            return
        finally:
            # A rerun or a stop mid-stream (a widget touched, the tab closed) leaves here too: the reply
            # is recorded as interrupted, with the text that arrived.
            stream.close()
            reply.close()
    # Rerun so the new turn renders like the others, with its triage, sources, the stats and, when it
    # failed, the notice and the button that sends it again.
    st.rerun()


if turn := pending_turn(messages):
    watch_pending(store, session_id, turn)
last_unanswered = unanswered(messages)
if last_unanswered:
    render_resend(last_unanswered)

text = st.chat_input("Type the customer's message…", key="chat_input")
resend, again = queued()  # a "Send it again" button pressed on the previous run
if text is not None:
    send(text)
elif resend is not None:
    send(resend, again)
render_unsent()

with stats_box:
    try:
        render_stats(conversation_stats(store.messages(session_id)), triage_state.get("state", ""))
    except StoreUnavailable:
        st.caption("Stats unavailable: the conversation store cannot be reached.")
