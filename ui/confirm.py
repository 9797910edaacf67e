"""Deleting asks first: the question under a Delete button, answered with "Delete for good" or "Keep it"."""

from __future__ import annotations

import streamlit as st

from ui.auth import authorized


def ask_first(state_key: str, target: str) -> None:
    """The Delete button was pressed for `target`: ask on this run and the next ones until answered."""
    st.session_state[state_key] = target


def confirmed(state_key: str, target: str, question: str, action: str, prefix: str) -> bool:
    """True once the question about `target` is answered "Delete for good" by someone allowed `action`.

    Buttons: `{prefix}_delete_confirm` and `{prefix}_delete_cancel`.
    """
    if st.session_state.get(state_key) != target:
        return False
    st.warning(question)
    row = st.container(horizontal=True)
    yes = row.button("Delete for good", key=f"{prefix}_delete_confirm", type="primary")
    if row.button("Keep it", key=f"{prefix}_delete_cancel"):
        st.session_state.pop(state_key, None)
        st.rerun()
    if yes and authorized(action):  # the role is checked here, on the delete's own path
        st.session_state.pop(state_key, None)
        return True
    return False
