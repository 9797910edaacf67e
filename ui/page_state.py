"""Names that more than one page shares: session-state keys, page files and the choices they offer."""

from __future__ import annotations

import streamlit as st

from chatbot.store.conversations import ConversationStore
from common.errors import StoreUnavailable

CHAT_PAGE = "views/chat.py"
CUSTOMER_TIERS = ("standard", "plus", "business", "vip")
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
    BACKEND_DOWN = "backend_down"


def open_chat_with_local_model(model_path: str, adapter_path: str = "") -> None:
    """Switch to the Chat page with the Local backend on this model folder (and LoRA adapter)."""
    from backends.bundled import BUNDLED_MODEL, is_bundled

    st.session_state.update({ChatKeys.BACKEND: "local", ChatKeys.LOCAL_MODEL_PATH: model_path,
                             ChatKeys.LOCAL_ADAPTER_PATH: adapter_path,
                             ChatKeys.LOCAL_MODEL_CHOICE: BUNDLED_MODEL if is_bundled(model_path) else LOCAL_FOLDER})
    st.switch_page(CHAT_PAGE)


def open_conversation(session_id: str) -> None:
    """Switch to the Chat page on a stored conversation, to read or resume it."""
    st.switch_page(CHAT_PAGE, query_params={"c": session_id})


def current_conversation(store: ConversationStore) -> str:
    """The Chat page's conversation: the link's `?c=`, else this browser session's, else a new one.

    The id lives in the URL, so a refresh or a second tab resumes it. A `c` of another form than the
    store makes, and not already stored (`*`, a path, thousands of characters), is never opened: a
    fresh conversation starts instead, with a notice saying so.
    """
    requested = st.query_params.get("c")
    if requested:
        try:
            accepted = store.accepts(requested)
        except StoreUnavailable:
            accepted = False
        if not accepted:
            st.warning("The conversation in this link does not exist, or its id is not valid: "
                       "a new conversation was started instead.", icon=":material/link_off:")
            requested = ""
            st.session_state[ChatKeys.SESSION_ID] = store.new_id()
    session_id = requested or st.session_state.get(ChatKeys.SESSION_ID) or store.new_id()
    st.session_state[ChatKeys.SESSION_ID] = session_id
    if st.query_params.get("c") != session_id:
        st.query_params["c"] = session_id
    return session_id
