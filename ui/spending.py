"""The spending limits on the pages: which backend answers (decided in chatbot.access.metering), the
notice when it is not the one chosen, and the Stats page's view of the spend.

The pages check no limit themselves: the backend they are given is metered (every API call it
makes is held against the limits, and refused over one), and `answering` says when the offline
backend answers instead, and why.
"""

from __future__ import annotations

from typing import Callable

import pandas as pd
import redis
import streamlit as st

from backends.base import Backend
from chatbot.access.metering import Answering, answering_backend
from chatbot.access.spending import Spending
from ui.auth import client_id
from ui.services import get_backend, get_services

OFFLINE_NOTE = " Replies come from the offline backend until then."


def get_spending() -> Spending:
    """The process's spending limits (the shared services' own)."""
    return get_services().spending


def answering(build: Callable[[], Backend], conversation_id: str = "", set_aside: str = "", where=None) -> Answering:
    """Which backend answers this browser session's next call in `conversation_id`: `build()`'s, metered,
    or the offline one, and why; a spending limit reached is said in `where` (a container: the chat page's
    place above the conversation; the sidebar when not given), with when it resets."""
    choice = answering_backend(build, lambda: get_backend("offline"), get_spending(), client_id(),
                               conversation_id, set_aside)
    if choice.why == "limit":
        (where or st.sidebar).warning(choice.reason + OFFLINE_NOTE, icon=":material/savings:")
    return choice


def render_spending() -> None:
    """Today's spend on the API backends against the limits, and the last days' tokens."""
    spending = get_spending()
    limits = spending.limits
    try:
        days = spending.days(14)
    except redis.RedisError:
        st.caption("Spending unavailable: the conversation store cannot be reached.")
        return
    today = days[-1]
    cols = st.columns(4)
    cols[0].metric("Tokens today", f"{today['tokens']:,.0f}",
                   help=f"Daily limit {limits.daily_tokens:,}" if limits.daily_tokens else "No daily token limit")
    cols[1].metric("Estimated cost today", f"${today['cost']:,.2f}",
                   help=(f"Daily limit ${limits.daily_cost:,.2f}. " if limits.daily_cost else "No daily cost limit. ")
                   + f"{today['tokens'] - today['priced_tokens']:,.0f} tokens today have no price set.")
    cols[2].metric("API requests today", f"{today['requests']:,.0f}")
    cols[3].metric("Requests a minute", f"{limits.requests_per_minute or '–'}", help="Per agent (0: no limit)")
    for used, cap, label in ((today["tokens"], limits.daily_tokens, "tokens"),
                             (today["cost"], limits.daily_cost, "cost")):
        if cap:
            share = min(1.0, used / cap)
            shown = f"${used:,.2f} of ${cap:,.2f}" if label == "cost" else f"{used:,.0f} of {cap:,}"
            st.progress(share, text=f"Today's {label}: {shown} ({share:.0%}), resets at midnight UTC")
    st.caption(f"Each conversation may use {limits.conversation_tokens:,} tokens on the API backends"
               if limits.conversation_tokens else "No token limit per conversation")
    if today["models"]:
        st.dataframe([{"model": model, "tokens": int(row["tokens"]), "estimated cost ($)": round(row["cost"], 4)}
                      for model, row in sorted(today["models"].items())], hide_index=True, key="spend_models")
    if any(day["tokens"] for day in days):
        st.bar_chart(pd.DataFrame({"day": [d["day"] for d in days], "tokens": [d["tokens"] for d in days]}),
                     x="day", y="tokens", height=200)
