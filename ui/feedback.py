"""Feedback under a reply: thumbs, an optional comment, and approval for training datasets."""

from __future__ import annotations

import streamlit as st

from common.errors import ChatbotError
from chatbot.store.conversations import ConversationStore
from chatbot.store.messages import Feedback, Message


def _key(session_id: str, index: int, part: str) -> str:
    return f"feedback_{session_id}_{index}_{part}"


def _save(store: ConversationStore, session_id: str, index: int, ts: float | None = None) -> None:
    """Write the widgets' current values; a failure is shown on the next run instead of raised.

    `ts` (the reply's time) finds the reply if a turn in another tab moved it since this page read it."""
    score = st.session_state.get(_key(session_id, index, "score"))
    comment = st.session_state.get(_key(session_id, index, "comment"), "")
    try:
        store.set_feedback(session_id, index, score, comment or "", ts=ts)
        st.session_state.pop(_key(session_id, index, "error"), None)
    except ChatbotError as exc:
        st.session_state[_key(session_id, index, "error")] = f"Feedback not saved: {exc}"


def _save_approval(store: ConversationStore, session_id: str, index: int, ts: float | None = None) -> None:
    approved = bool(st.session_state.get(_key(session_id, index, "approved")))
    try:
        store.set_approved(session_id, index, approved, ts=ts)
        st.session_state.pop(_key(session_id, index, "error"), None)
    except ChatbotError as exc:
        st.session_state[_key(session_id, index, "error")] = f"Approval not saved: {exc}"


def render_feedback(store: ConversationStore, session_id: str, index: int, message: Message) -> None:
    """Thumbs up/down, a comment once rated, and an "Approve for training" toggle for one stored reply.

    `index` is the reply's position in `store.messages(session_id)`; `message` is that stored
    message, whose saved feedback sets the widgets' starting values.
    """
    saved = message.feedback or Feedback()
    score_key = _key(session_id, index, "score")
    thumbs, comment_box, approve = st.columns([1, 4, 2], vertical_alignment="center")
    with thumbs:
        st.feedback("thumbs", key=score_key, default=saved.score,
                    on_change=_save, args=(store, session_id, index, message.ts))
    rated = st.session_state.get(score_key, saved.score) is not None
    if rated or saved.comment:
        with comment_box:
            st.text_input(
                "Comment", value=saved.comment, key=_key(session_id, index, "comment"),
                placeholder="What was right or wrong? (optional)", label_visibility="collapsed",
                on_change=_save, args=(store, session_id, index, message.ts),
            )
    with approve:
        st.toggle("Approve for training", value=message.approved,
                  key=_key(session_id, index, "approved"), on_change=_save_approval,
                  args=(store, session_id, index, message.ts),
                  help="Approved replies, with the conversation before them, can be used to fine-tune a model.")
    error = st.session_state.get(_key(session_id, index, "error"))
    if error:
        st.warning(error, icon=":material/cloud_off:")
