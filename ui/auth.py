"""The admin gate for the prompt and training pages."""

from __future__ import annotations

import time

import streamlit as st

from ui.services import get_auth

SESSION_HOURS = 8


def _client() -> str:
    # Lockouts are per client address, so that one attacker cannot lock every admin out.
    address = st.context.ip_address
    return address if isinstance(address, str) else ""


def require_admin() -> None:
    """Show the password form and stop the page until the right password is given."""
    signed_in = st.session_state.get("admin_since")
    if signed_in and time.time() - signed_in < SESSION_HOURS * 3600:
        if st.sidebar.button("Sign out of admin", icon=":material/logout:", key="admin_sign_out"):
            del st.session_state["admin_since"]
            st.rerun()
        return
    st.session_state.pop("admin_since", None)
    auth = get_auth()
    st.subheader("Admin sign-in")
    st.caption("This page is for administrators. The chat stays open to everyone.")
    locked = auth.locked_for(_client())
    if locked:
        st.error(f"Too many wrong passwords. Try again in {int(locked // 60) + 1} minute(s).")
        st.stop()
    with st.form("admin_login", clear_on_submit=True):
        password = st.text_input("Admin password", type="password", key="admin_password_input")
        submitted = st.form_submit_button("Unlock", key="admin_unlock")
    if submitted:
        if auth.check(password, _client()):
            st.session_state["admin_since"] = time.time()
            st.rerun()
        elif auth.locked_for(_client()):
            st.error("Too many wrong passwords: the form is locked for a few minutes.")
        else:
            st.error("Wrong password.")
    st.stop()
