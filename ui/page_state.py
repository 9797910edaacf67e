"""Names that more than one page shares: session-state keys, page files and the choices they offer."""

from __future__ import annotations

import re

import streamlit as st

from chatbot.store.conversations import ConversationStore
from common.errors import StoreUnavailable

CHAT_PAGE = "views/chat.py"
CUSTOMER_TIERS = ("standard", "plus", "business", "vip")
# The session-state key of a linked conversation id the store did not hold when it was opened.
NOT_FOUND = "conversation_not_found"
# Where `keep_widget_state` copies a widget's value: a plain key, which Streamlit never forgets.
_KEPT = "_kept_"
# The widgets whose values `keep_widget_state` keeps on the Training and Prompts pages: every one but
# their buttons and file uploads (which cannot be set).
TRAINING_WIDGETS = (r"train_base_model|train_tab|spec_.+|job_select|adapter_select"
                    r"|ds_(source|table_sample|col_instruction|col_response|col_input|stored_limit|val_fraction"
                    r"|drop_long)")
PROMPTS_WIDGETS = (r"prompts_(name|author|diff_mode|test_(query|tier|k|backend|model)"
                   r"|(editor|message|test_source|test_vars|rollback_to|diff_from|diff_to)_.+)")
# The Local backend's choice of "a model folder" (the other choice is the bundled model, by its name).
LOCAL_FOLDER = "folder"


class ChatKeys:
    """Session-state keys of the Chat page's sidebar; other pages preset them before switching there."""

    SESSION_ID = "session_id"
    BACKEND = "chat_backend"
    MODEL = "chat_model"
    LOCAL_MODEL_CHOICE = "local_model_choice"
    LOCAL_MODEL_PATH = "local_model_path"
    LOCAL_ADAPTER_PATH = "local_adapter_path"
    CUSTOMER_TIER = "customer_tier"
    AGENT = "agent_name"
    UNSENT = "unsent"
    UNSENT_REASON = "unsent_reason"
    DRAFT = "draft"
    RESEND = "resend"
    RESEND_TURN = "resend_turn"
    BACKEND_DOWN = "backend_down"


def open_chat_with_local_model(model_path: str, adapter_path: str = "") -> None:
    """Switch to the Chat page with the Local backend on this model folder (and LoRA adapter).

    It opens a new conversation (the open one stays in History, answered by the backend it had), and
    forgets a backend set aside earlier in the session: the page says afresh whether this one answers.
    """
    from backends.bundled import BUNDLED_MODEL, is_bundled

    st.session_state[ChatKeys.SESSION_ID] = ConversationStore.new_id()
    for key in (ChatKeys.BACKEND_DOWN, NOT_FOUND, ChatKeys.UNSENT, ChatKeys.UNSENT_REASON, ChatKeys.DRAFT):
        st.session_state.pop(key, None)
    st.session_state.update({ChatKeys.BACKEND: "local", ChatKeys.LOCAL_MODEL_PATH: model_path,
                             ChatKeys.LOCAL_ADAPTER_PATH: adapter_path,
                             ChatKeys.LOCAL_MODEL_CHOICE: BUNDLED_MODEL if is_bundled(model_path) else LOCAL_FOLDER})
    st.switch_page(CHAT_PAGE)


def open_conversation(session_id: str) -> None:
    """Switch to the Chat page on a stored conversation, to read or resume it."""
    st.switch_page(CHAT_PAGE, query_params={"c": session_id})


def start_new_conversation(store: ConversationStore) -> str:
    """A fresh conversation for this browser session; its id reaches the URL once something is stored in it."""
    st.session_state[ChatKeys.SESSION_ID] = store.new_id()
    st.query_params.pop("c", None)
    return st.session_state[ChatKeys.SESSION_ID]


def _stored(store: ConversationStore, session_id: str) -> bool:
    try:
        return store.exists(session_id)
    except StoreUnavailable:  # cannot tell: the page says the store is down
        return True


def current_conversation(store: ConversationStore) -> str:
    """The Chat page's conversation: the link's `?c=`, else this browser session's, else a new one.

    The id of a conversation with something stored lives in the URL, so a refresh or a second tab
    resumes it; a new conversation's id joins the URL with its first message (a refresh before that
    simply opens another new one). A `c` of another form than the store makes, and not already stored
    (`*`, a path, thousands of characters), is never opened: a fresh conversation starts instead, with
    a notice. A well-formed `c` that the store does not hold (mistyped, made up, expired) opens with a
    notice saying it was not found and a button that starts a new one.
    """
    requested = st.query_params.get("c")
    own = st.session_state.get(ChatKeys.SESSION_ID)
    if requested:
        try:
            accepted = store.accepts(requested)
        except StoreUnavailable:
            accepted = False
        if not accepted:
            st.warning("The conversation in this link does not exist, or its id is not valid: "
                       "a new conversation was started instead.", icon=":material/link_off:")
            return start_new_conversation(store)
        if requested != own and not _stored(store, requested):
            st.session_state[NOT_FOUND] = requested  # said until something is stored under it
    session_id = requested or own or store.new_id()
    st.session_state[ChatKeys.SESSION_ID] = session_id
    if st.session_state.get(NOT_FOUND) == session_id:
        if _stored(store, session_id):
            del st.session_state[NOT_FOUND]
        else:
            _not_found(store, session_id)
    if st.query_params.get("c") != session_id and _stored(store, session_id):
        st.query_params["c"] = session_id
    return session_id


def _not_found(store: ConversationStore, session_id: str) -> None:
    """The notice for a link to a conversation the store does not hold, with a way to a new one."""
    with st.container(border=True):
        st.warning(f"Conversation {session_id} was not found: the link may be mistyped, or the conversation "
                   "expired or was deleted. A message sent here starts it under this id.",
                   icon=":material/search_off:")
        if st.button("Start a new conversation", key="link_new_conversation", icon=":material/add_comment:"):
            start_new_conversation(store)
            st.rerun()


def keep_widget_state(pattern: str) -> None:
    """Keep the values of this page's widgets whose keys fully match `pattern` across visits to other pages.

    Streamlit forgets a widget's value at the end of any run that does not draw it, so a visit to
    another page resets every choice made here. Called at the top of the page, before its widgets:
    each value is copied under a key of its own (which Streamlit keeps), and put back when the widget's
    own key is gone. The pattern must leave out buttons and file uploaders, whose values cannot be set.
    """
    keys = re.compile(pattern)
    state = st.session_state
    for key in list(state.keys()):
        if keys.fullmatch(key):
            state[_KEPT + key] = state[key]
    for kept in [k for k in state.keys() if k.startswith(_KEPT)]:
        key = kept[len(_KEPT):]
        if keys.fullmatch(key) and key not in state:
            state[key] = state[kept]
