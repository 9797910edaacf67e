"""API keys (admin): create a key for the HTTP API (shown once), see every key, revoke one."""

from __future__ import annotations

import time

import streamlit as st

from chatbot.access.api_keys import ROLES
from common.errors import ChatbotError
from ui.auth import authorized, require_admin
from ui.api_keys import get_api_keys

require_admin()

keys = get_api_keys()
ss = st.session_state
st.title("API keys")
st.caption("Keys for the HTTP API (`python -m chatbot serve`, docs at `/docs`). Only a hash of each key is "
           "kept: a new key is shown once, here, right after it is made. Each key has its own limits; its API "
           "turns also count towards the desk's spending limits.")

with st.form("api_key_new", clear_on_submit=True):
    name = st.text_input("For", placeholder="Help desk integration", max_chars=80)
    cols = st.columns(3)
    role = cols[0].selectbox("Role", ROLES, help="Agent: chat, classify, conversations. Admin: also prompts.")
    per_minute = cols[1].number_input("Requests a minute", min_value=0, value=60, step=10, help="0: no limit")
    daily = cols[2].number_input("Tokens a day", min_value=0, value=200_000, step=10_000, help="0: no limit")
    made = st.form_submit_button("Create key", type="primary")
if made and authorized("manage_api_keys"):
    try:
        record, key = keys.create(name, role, requests_per_minute=int(per_minute), daily_tokens=int(daily))
    except ChatbotError as exc:
        st.error(str(exc))
    else:
        ss["api_key_shown"] = (record.key_id, key)

shown = ss.pop("api_key_shown", None)
if shown:
    st.success(f"Key {shown[0]} made. Copy it now: it is not shown again.", icon=":material/key:")
    st.code(shown[1], language=None)

rows = keys.list()
if not rows:
    st.info("No API keys yet.")
for record in rows:
    line = st.container(horizontal=True, vertical_alignment="center")
    state = f"revoked {time.strftime('%Y-%m-%d', time.gmtime(record.revoked))}" if record.revoked else "live"
    line.markdown(f"**{record.name}** · `{record.key_id}` · {record.role} · "
                  f"{record.requests_per_minute or '∞'} requests/min · {record.daily_tokens or '∞'} tokens/day · "
                  f"{keys.tokens_today(record):,} tokens today · {state}")
    if not record.revoked and line.button("Revoke", key=f"api_key_revoke_{record.key_id}") \
            and authorized("manage_api_keys"):
        keys.revoke(record.key_id)
        st.rerun()
