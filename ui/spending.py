"""The spending limits on the chat's turn path, and the Stats page's view of them.

Before a turn, `within_limits` swaps a metered backend for the offline one when a limit is
reached, and says why and when it resets; `metered` streams a reply, counting its request when it
starts and its tokens (from the reply's metadata) when it ends.
"""

from __future__ import annotations

import logging
from typing import Iterator

import pandas as pd
import redis
import streamlit as st

from backends.base import Backend
from chatbot.access.spending import Limits, Spending, Verdict, is_metered
from common.errors import ConfigurationError
from ui.auth import client_id
from ui.services import backend_class, get_backend, get_services

log = logging.getLogger(__name__)
OFFLINE_NOTE = " Replies come from the offline backend until then."


@st.cache_resource(show_spinner=False)
def get_spending() -> Spending:
    services = get_services()
    store = services.store
    return Spending(lambda: store.client, Limits.from_settings(services.settings), conversation_ttl=store.ttl)


def metered_name(name: str) -> bool:
    try:
        return is_metered(backend_class(name))
    except ConfigurationError:  # not a backend (a hand-off to a person)
        return False


def within_limits(backend: Backend, conversation_id: str = "", where=None) -> Backend:
    """The backend for the next turn: the one chosen, or the offline one once a limit is reached.

    Which limit, and when it resets, is said in `where` (a container; the sidebar's end when not given).
    """
    if not is_metered(backend):
        return backend
    try:
        verdict = get_spending().check(client_id(), conversation_id)
    except redis.RedisError as exc:
        log.warning("Spending limits unavailable: %s", exc)
        verdict = Verdict(False, "unavailable")
    if verdict.allowed:
        return backend
    (where or st.sidebar).warning(verdict.message + OFFLINE_NOTE, icon=":material/savings:")
    return get_backend("offline")


def metered(reply) -> Iterator[str]:
    """Stream `reply`, its request and then its tokens counted against the limits when its backend is metered."""
    counted = metered_name(reply.meta.backend)
    if counted:
        try:
            get_spending().count_request(client_id())
        except redis.RedisError as exc:
            log.warning("Could not count a request: %s", exc)
    try:
        yield from reply
    finally:
        if counted:
            meta = reply.meta
            try:
                get_spending().record(meta.session_id, meta.model, meta.input_tokens, meta.output_tokens)
            except redis.RedisError as exc:
                log.warning("Could not record a turn's tokens: %s", exc)


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
