"""Handoff queue: conversations handed to a person, oldest first; claim one, answer it, close it or hand it back."""

from __future__ import annotations

from datetime import datetime

import redis
import streamlit as st

from chatbot.handoff.queue import CLAIMED, HandoffConflict
from chatbot.handoff.status import as_shown
from chatbot.store.messages import turn_meta
from common.errors import ChatbotError, StoreUnavailable
from ui.auth import current_admin
from ui.chat_view import SENTIMENT_COLOURS, render_message
from ui.services import get_services

services = get_services()
queue, store = services.handoff, services.store


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else "–"


st.title("Handoff queue")
st.caption("Conversations the assistant handed to a person, the longest waiting first. Claim one to answer "
           "the customer; close it when it is resolved, or hand it back to the assistant.")
admin = current_admin()
if "handoff_agent" not in st.session_state and admin:
    st.session_state["handoff_agent"] = admin.user
agent = st.text_input("Your name", key="handoff_agent", placeholder="shown to other agents on the cases you claim")
try:
    cases = queue.open_cases()
except (StoreUnavailable, redis.RedisError) as exc:
    st.error(f"The handoff queue is unavailable: {exc}", icon=":material/cloud_off:")
    st.stop()
if not cases:
    st.info("No conversation is waiting for a person.", icon=":material/inbox:")
    st.stop()

st.dataframe(
    [{"escalated": when(c.escalated_at), "status": c.status if c.status != CLAIMED else f"claimed by {c.agent}",
      "priority": c.priority, "sentiment": c.sentiment.replace("_", " "), "reasons": ", ".join(c.reasons),
      "waiting messages": c.waiting, "escalated on": c.message[:80], "id": c.conversation} for c in cases],
    hide_index=True, key="handoff_table",
)
by_id = {c.conversation: c for c in cases}
opened = st.selectbox("Open a case", list(by_id), key="handoff_open",
                      format_func=lambda i: f"{when(by_id[i].escalated_at)} · {by_id[i].message[:70]}")
case = by_id[opened]

badges = st.container(horizontal=True, gap="small")
badges.badge(f"priority {case.priority}/10 at escalation", icon=":material/flag:",
             color="red" if case.priority >= 8 else "orange" if case.priority >= 5 else "gray")
badges.badge(f"{case.sentiment.replace('_', ' ') or 'unknown'} at escalation", icon=":material/mood:",
             color=SENTIMENT_COLOURS.get(case.sentiment, "gray"))
badges.badge("escalated: " + (", ".join(case.reasons) or "escalated"), icon=":material/support_agent:", color="red")
if case.waiting:
    badges.badge(f"{case.waiting} message(s) waiting for a person", icon=":material/hourglass_top:", color="orange")
if case.brief:
    with st.expander("Brief", expanded=True):
        st.text(case.brief)


def act(action, *args) -> None:
    """Run a queue action; a conflict or a store fault is shown, never a traceback."""
    try:
        action(opened, agent, *args)
    except (ChatbotError, redis.RedisError) as exc:
        st.session_state["handoff_error"] = str(exc)


if error := st.session_state.pop("handoff_error", ""):
    st.error(error, icon=":material/error:")
mine = case.status == CLAIMED and case.agent == agent.strip()
with st.container(horizontal=True):
    if case.status != CLAIMED:
        st.button("Claim", key="handoff_claim", icon=":material/front_hand:", type="primary",
                  on_click=act, args=(queue.claim,), disabled=not agent.strip(),
                  help=None if agent.strip() else "Write your name first.")
    elif not mine:
        st.info(f"{case.agent} is working on this conversation.", icon=":material/lock:")
    if mine:
        st.button("Close", key="handoff_close", icon=":material/task_alt:", on_click=act, args=(queue.close,),
                  help="Resolved: the case leaves the queue; a new customer message starts a new case with the "
                       "assistant.")
        st.button("Hand back to the assistant", key="handoff_hand_back", icon=":material/smart_toy:",
                  on_click=act, args=(queue.hand_back,), help="The assistant answers the next message again.")

try:
    messages = store.messages(opened)
except StoreUnavailable as exc:
    st.error(str(exc), icon=":material/cloud_off:")
    st.stop()
messages = as_shown(messages)  # a message an agent has answered no longer shows as waiting
for index, message in enumerate(messages):
    render_message(message, turn_meta(messages, index))

if mine:
    with st.form("handoff_reply_form", clear_on_submit=True):
        text = st.text_area("Reply to the customer", key="handoff_reply")
        if st.form_submit_button("Send reply", icon=":material/send:", type="primary"):
            act(queue.reply, text)
            st.rerun()
