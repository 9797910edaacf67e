"""Stats: how the assistant is doing across conversations, as charts, and the API spend against its limits."""

from __future__ import annotations

import time

import altair as alt
import pandas as pd
import streamlit as st

from chatbot.store import analytics, csv_export
from common.errors import StoreUnavailable
from common.wording import plural
from ui.auth import ADMIN_ONLY, is_admin
from ui.services import get_services
from ui.spending import render_spending
from ui.timezone import visitor_zone, zone_caption

PERIODS = {"Last 24 hours": 1, "Last 7 days": 7, "Last 30 days": 30, "Last 90 days": 90, "All time": 0}
MAX_CONVERSATIONS = 2000  # the most recent ones in the period; keeps the page fast on a busy desk
store = get_services().store
zone = visitor_zone()  # days and hours are the agent's, not the server's


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def spending_section() -> None:
    st.subheader("API spending", help="OpenAI, Anthropic and Ollama turns, against the limits in the settings. "
                                      "Over a limit the chat answers from the offline backend.")
    render_spending()


st.title("Stats")
period = st.selectbox("Period", list(PERIODS), index=2, key="stats_period")
since = time.time() - PERIODS[period] * 86400 if PERIODS[period] else None
try:
    ids = store.ids_between(since, limit=MAX_CONVERSATIONS)
    conversations = store.load(ids)
except StoreUnavailable as exc:
    st.error(f"{exc} Stats are unavailable until it is back.", icon=":material/cloud_off:")
    st.stop()

numbers = analytics.overview(conversations, since, zone)
if not numbers["turns"] and not numbers["failed_turns"]:
    st.info("No conversations in this period yet.", icon=":material/query_stats:")
    spending_section()
    st.stop()
if len(ids) == MAX_CONVERSATIONS:
    st.caption(f"Based on the {MAX_CONVERSATIONS:,} most recently active conversations of the period.")
st.caption(zone_caption(zone))
if is_admin():
    st.download_button("Export turns CSV", csv_export.turns_csv(conversations, since, zone),
                       file_name="turns.csv", mime="text/csv", key="stats_export_csv", icon=":material/table:",
                       help="One row per turn of the period, as counted here")
else:
    st.button("Export turns CSV", key="stats_export_csv", icon=":material/table:", disabled=True, help=ADMIN_ONLY)

latency = {row["measure"]: row for row in numbers["latency"]}
feedback, escalation = numbers["feedback"], numbers["escalation"]
cols = st.columns(3) + st.columns(3)
cols[0].metric("Conversations", f"{numbers['conversations']:,}")
cols[1].metric("Turns", f"{numbers['turns']:,}", help=f"{numbers['failed_turns']} more got no reply")
cols[2].metric("Escalation rate", share(escalation["rate"]), help=plural(escalation['escalated'], 'conversation'))
cols[3].metric("Feedback score", share(feedback["score"]),
               help=f"Share of thumbs up among {feedback['rated']} rated replies")
cols[4].metric("Reply p95", ms(latency["reply"]["p95"]))
cols[5].metric("First token p95", ms(latency["first token"]["p95"]))

left, right = st.columns(2)
with left:
    st.subheader("Volume")
    st.bar_chart(pd.DataFrame(numbers["volume"]), x="day", y=["conversations", "turns"], stack=False,
                 x_label=f"day ({zone.label})", y_label="count")
with right:
    st.subheader("Intent mix")
    st.bar_chart(pd.DataFrame(numbers["intents"]), x="intent", y="turns", horizontal=True)

left, right = st.columns(2)
with left:
    st.subheader("Escalations")
    if escalation["reasons"]:
        st.bar_chart(pd.DataFrame(escalation["reasons"]), x="reason", y="count", horizontal=True)
    else:
        st.caption("No escalation in this period.")
with right:
    st.subheader("Sentiment")
    if numbers["sentiment"]["rows"]:
        # A line through a point per bucket: a single day (or hour) still shows as a point.
        unit = numbers["sentiment"]["unit"]
        points = alt.OverlayMarkDef(size=80, filled=True)
        trend = alt.Chart(pd.DataFrame(numbers["sentiment"]["rows"])).mark_line(point=points).encode(
            x=alt.X("when:O", title=f"{unit} ({zone.label})"),
            y=alt.Y("mean_score:Q", title="mean score", scale=alt.Scale(domain=[-1, 1])),
            tooltip=[alt.Tooltip("when:O", title=unit), alt.Tooltip("mean_score:Q", title="mean score", format=".2f"),
                     alt.Tooltip("turns:Q")],
        )
        st.altair_chart(trend, width="stretch")
        if numbers["sentiment_levels"]:  # turns scored by an older release may carry a score but no level
            st.bar_chart(pd.DataFrame(numbers["sentiment_levels"]), x="sentiment", y="turns", height=180)
    else:
        st.caption("No sentiment recorded in this period.")

left, right = st.columns(2)
with left:
    st.subheader("Latency")
    table = pd.DataFrame(
        {row["measure"]: [row[f"p{q}"] for q in analytics.PERCENTILES] for row in numbers["latency"]},
        index=[f"p{q}" for q in analytics.PERCENTILES],
    )
    st.bar_chart(table, stack=False, y_label="ms")
    st.caption(" · ".join(f"{row['measure']}: {plural(row['n'], 'turn')}" for row in numbers["latency"]))
with right:
    st.subheader("Tokens per backend")
    st.bar_chart(pd.DataFrame(numbers["tokens"]), x="backend", y=["input_tokens", "output_tokens"])

st.subheader("Feedback")
cols = st.columns(4)
cols[0].metric("Thumbs up", feedback["up"])
cols[1].metric("Thumbs down", feedback["down"])
cols[2].metric("Comments", feedback["comments"])
cols[3].metric("Approved for training", feedback["approved"])

spending_section()
