"""History: find past conversations, read one, resume it in the chat; admins also export or delete it."""

from __future__ import annotations

from datetime import date

import streamlit as st

from chatbot.handoff.status import as_shown
from chatbot.store import analytics, csv_export
from chatbot.store.messages import Feedback, Message, turn_meta
from common.errors import ConversationNotFound, StoreUnavailable
from common.wording import plural
from chatbot.store.server import ephemeral_storage_warning
from ui.auth import ADMIN_ONLY, admin_hint, is_admin
from ui.chat_view import render_message
from ui.confirm import ask_first, confirmed
from ui.page_state import open_conversation
from ui.services import get_services
from ui.timezone import visitor_zone, zone_caption

LIMIT = 200  # conversations listed per search
services = get_services()
store = services.store
admin = is_admin()
zone = visitor_zone()  # times are read in the agent's own zone, not the server's


def when(ts: float) -> str:
    return zone.format(ts)


def date_range(picked) -> tuple[float | None, float | None]:
    """The date input's range as timestamps (days in the agent's zone), the end day included; empty is no filter."""
    days = [d for d in (picked if isinstance(picked, (list, tuple)) else [picked]) if isinstance(d, date)]
    if not days:
        return None, None
    return zone.day_bounds(days[0])[0], zone.day_bounds(days[-1])[1]


def feedback_note(message: Message) -> str:
    feedback = message.feedback or Feedback()
    notes = [{1: ":material/thumb_up: helpful", 0: ":material/thumb_down: not helpful"}.get(feedback.score, "")]
    if feedback.comment:
        notes.append(f"“{feedback.comment}”")
    if message.approved:
        notes.append(":material/verified: approved for training")
    return " · ".join(n for n in notes if n)


def escalation_banner(conversation: dict, case) -> str:
    """The escalation as it happened: when, why, and the escalating message's sentiment and priority."""
    reasons = ", ".join(conversation.get("escalation_reasons") or [])
    text = f"Escalated to a person{' on ' + when(conversation['escalated_at']) if conversation.get('escalated_at') else ''}"
    text += f": {reasons}." if reasons else "."
    if conversation.get("escalation_sentiment"):
        text += (f" At escalation: sentiment {conversation['escalation_sentiment'].replace('_', ' ')}, "
                 f"priority {conversation.get('escalation_priority')}/10.")
    if case is not None:
        text += {"waiting": " Waiting in the handoff queue", "claimed": f" Claimed by {case.agent}",
                 "closed": f" Closed by {case.agent}", "handed_back": f" Handed back to the assistant by {case.agent}",
                 }.get(case.status, "") + (f"; {case.waiting} message(s) waiting for a person." if case.waiting else ".")
    return text


st.title("Conversation history")
if warning := ephemeral_storage_warning(services.settings):
    st.warning(warning, icon=":material/warning:")
try:
    recent = store.search(limit=2000)
    agents = store.agents()
except StoreUnavailable as exc:
    st.error(f"{exc} History is unavailable until it is back.", icon=":material/cloud_off:")
    st.stop()

# -- filters ---------------------------------------------------------------------------------
c1, c2, c3, c4 = st.columns([3, 2, 2, 3])
text = c1.text_input("Search the messages", key="history_text", placeholder="refund, camera, an order number…")
intents = sorted({name for s in recent for name in s.intents})
intent = c2.selectbox("Intent", ["Any intent", *intents], key="history_intent")
escalation = c3.selectbox("Escalation", ["Any", "Escalated", "Not escalated"], key="history_escalation")
picked = c4.date_input("Started between", value=(), key="history_dates", help="Leave empty for any date.")
agent = ""
if agents:
    chosen_agent = st.selectbox("Agent", ["Any agent", *agents], key="history_agent")
    agent = "" if chosen_agent == "Any agent" else chosen_agent
since, until = date_range(picked)
try:
    found = store.search(
        text=text, intent="" if intent == "Any intent" else intent,
        escalated={"Any": None, "Escalated": True, "Not escalated": False}[escalation],
        since=since, until=until, agent=agent, limit=LIMIT,
    )
except StoreUnavailable as exc:
    st.error(f"{exc} History is unavailable until it is back.", icon=":material/cloud_off:")
    st.stop()

if not found:
    st.info("No conversation matches these filters." if recent else "No conversations yet: they appear here "
            "as soon as the chat saves its first turn.", icon=":material/search_off:")
    st.stop()

st.caption(plural(len(found), "conversation") + (f", the {LIMIT} most recent shown" if len(found) == LIMIT else "")
           + f". {zone_caption(zone)}")
st.dataframe(
    # An escalated conversation is listed with the triage of its escalation, not of its last message.
    [{f"started ({zone.label})": when(s.created), f"last active ({zone.label})": when(s.updated), "turns": s.turns,
      "intents": ", ".join(s.intents), "escalated": s.escalated,
      "sentiment": (s.escalation_sentiment or s.sentiment) if s.escalated else s.sentiment,
      "priority": (s.escalation_priority or s.priority) if s.escalated else s.priority,
      "title": s.title, "id": s.id} for s in found],
    hide_index=True, key="history_table",
)

# -- one conversation --------------------------------------------------------------------------
ids = [s.id for s in found]
labels = {s.id: f"{when(s.updated)} · {s.title[:70] or '(no text)'} · {plural(s.turns, 'turn')}" for s in found}
wanted = st.query_params.get("open")
opened = st.selectbox("Open a conversation", ids, format_func=labels.__getitem__, key="history_open",
                      index=ids.index(wanted) if wanted in ids else 0)
if st.query_params.get("open") != opened:
    st.query_params["open"] = opened  # a refresh or a shared link reopens the same conversation

try:
    conversation = store.conversation(opened)
except (ConversationNotFound, StoreUnavailable) as exc:
    st.warning(str(exc))
    st.stop()

with st.container(horizontal=True):
    if st.button("Resume in chat", key="history_resume", icon=":material/chat:", type="primary"):
        open_conversation(opened)
    if admin:  # an agent's page never carries the files
        st.download_button("Export JSON", analytics.to_json(conversation), file_name=f"conversation-{opened}.json",
                           mime="application/json", key="history_export_json", icon=":material/data_object:")
        st.download_button("Export Markdown", analytics.to_markdown(conversation, zone),
                           file_name=f"conversation-{opened}.md", mime="text/markdown", key="history_export_md",
                           icon=":material/description:")
        st.download_button("Export CSV", csv_export.conversation_csv(conversation, zone),
                           file_name=f"conversation-{opened}.csv", mime="text/csv", key="history_export_csv",
                           icon=":material/table:")
        st.download_button("Export list CSV", csv_export.conversations_csv(found, zone),
                           file_name="conversations.csv", mime="text/csv", key="history_export_list_csv",
                           icon=":material/table_rows:", help="The conversations listed above")
    else:
        st.button("Export JSON", key="history_export_json", icon=":material/data_object:", disabled=True,
                  help=ADMIN_ONLY)
        st.button("Export Markdown", key="history_export_md", icon=":material/description:", disabled=True,
                  help=ADMIN_ONLY)
        st.button("Export CSV", key="history_export_csv", icon=":material/table:", disabled=True, help=ADMIN_ONLY)
        st.button("Export list CSV", key="history_export_list_csv", icon=":material/table_rows:", disabled=True,
                  help=ADMIN_ONLY)
    if st.button("Delete", key="history_delete", icon=":material/delete:", disabled=not admin,
                 help=None if admin else ADMIN_ONLY):
        ask_first("history_confirm_delete", opened)
if not admin:
    admin_hint("export or delete conversations")

if confirmed("history_confirm_delete", opened, f"Delete this conversation ({len(conversation['messages'])} "
             "messages) for good?", "delete_conversations", "history"):
    try:
        store.delete(opened)
    except StoreUnavailable as exc:
        st.error(str(exc))
        st.stop()
    st.session_state.pop("history_open", None)
    st.query_params.pop("open", None)
    st.toast(f"Deleted conversation {opened}.", icon=":material/delete:")
    st.rerun()

facts = [f"Started {when(conversation['created'])}", f"last active {when(conversation['updated'])}",
         plural(conversation['turns'], 'turn')]
if conversation.get("agents"):
    facts.append("agent " + ", ".join(conversation["agents"]))
if conversation.get("intents"):
    facts.append("intents " + ", ".join(f"{k} ×{v}" for k, v in conversation["intents"].items()))
if conversation.get("sentiment"):
    facts.append(f"last message: sentiment {conversation['sentiment']}")
if conversation.get("priority"):
    facts.append(f"priority {conversation['priority']}")
st.caption(" · ".join(facts) + f" · id `{opened}`")
if conversation.get("escalated"):
    try:
        case = services.handoff.case(opened)
    except StoreUnavailable:
        case = None  # the banner without the queue's side: the conversation itself was read
    st.error(escalation_banner(conversation, case), icon=":material/support_agent:")
summary = ((conversation.get("state") or {}).get("memory") or {}).get("summary")
if summary:
    with st.expander("Summary of older messages"):
        st.markdown(summary)

st.caption("Read-only. Resume it in the chat to continue the conversation.")
messages = as_shown(conversation["messages"])
for index, message in enumerate(messages):
    # A customer message's routing and triage are stored with the turn: on the reply, or on itself.
    render_message(message, turn_meta(messages, index))
    note = feedback_note(message)
    if note:
        st.caption(note)
