"""The admin gate for the prompt and training pages."""

from __future__ import annotations

import streamlit as st

from ui.services import get_auth


def require_admin() -> None:
    """Show the password form and stop the page until the right password is given."""
    if st.session_state.get("admin_ok"):
        return
    auth = get_auth()
    st.subheader("Admin sign-in")
    st.caption("This page is for administrators. The chat stays open to everyone.")
    locked = auth.locked_for()
    if locked:
        st.error(f"Too many wrong passwords. Try again in {int(locked // 60) + 1} minute(s).")
        st.stop()
    with st.form("admin_login", clear_on_submit=True):
        password = st.text_input("Admin password", type="password", key="admin_password_input")
        submitted = st.form_submit_button("Unlock", key="admin_unlock")
    if submitted:
        if auth.check(password):
            st.session_state["admin_ok"] = True
            st.rerun()
        elif auth.locked_for():
            st.error("Too many wrong passwords: the form is locked for a few minutes.")
        else:
            st.error("Wrong password.")
    st.stop()
