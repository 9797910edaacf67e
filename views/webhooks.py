"""Webhooks (admins): endpoints that receive the desk's events, signed per Standard Webhooks; the delivery log."""

from __future__ import annotations

from datetime import datetime

import redis
import streamlit as st

from chatbot.store.jobs import worker_count
from chatbot.webhooks.events import EVENTS
from chatbot.webhooks.registry import FAILED, redact
from common.errors import ChatbotError
from ui.auth import authorized, require_admin
from ui.confirm import ask_first, confirmed
from ui.services import get_services

require_admin()
services = get_services()
dispatcher = services.events
registry = dispatcher.registry


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "–"


def run(action, *args) -> None:
    """An admin action from a button: the role is checked on its own path; errors are shown, not raised."""
    if not authorized("manage_webhooks"):
        return
    try:
        result = action(*args)
    except (ChatbotError, redis.RedisError) as exc:
        st.session_state["webhooks_error"] = str(exc)
        return
    status = getattr(result, "status", "")
    if status:
        st.session_state["webhooks_notice"] = (
            f"{result.type} {result.message_id} to {redact(result.url)}: {status}"
            + (f" ({result.last_error})" if result.last_error else " (queued for the worker)" if status == "pending"
               else "."))


st.title("Webhooks")
st.caption("Each endpoint receives the events it subscribes to as signed POST requests (Standard Webhooks: "
           "`webhook-id`, `webhook-timestamp`, `webhook-signature`), sent by `python -m chatbot webhook-worker`. "
           "An attempt has 15 s in all; failures are retried after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h "
           "and 24 h; an endpoint that answers 410 Gone is disabled. A test event is one attempt.")
if error := st.session_state.pop("webhooks_error", ""):
    st.error(error, icon=":material/error:")
if notice := st.session_state.pop("webhooks_notice", ""):
    st.info(notice, icon=":material/send:")

with st.form("webhooks_add", clear_on_submit=True):
    url = st.text_input("Endpoint URL", key="webhooks_url", placeholder="https://example.com/desk-events")
    events = st.multiselect("Events (none: all of them)", list(EVENTS), key="webhooks_events",
                            format_func=lambda e: f"{e} — {EVENTS[e]}")
    description = st.text_input("Description", key="webhooks_description")
    if st.form_submit_button("Add endpoint", icon=":material/add_link:", type="primary"):
        run(registry.add_endpoint, url, events, description)
        st.rerun()

try:
    endpoints = registry.endpoints()
    workers = worker_count(dispatcher.client)
except redis.RedisError as exc:
    st.error(f"Webhooks are unavailable: the conversation store cannot be reached ({exc}).")
    st.stop()
if endpoints and not workers:
    st.warning("No webhook worker is running: events wait in the queue until one starts "
               "(`python -m chatbot webhook-worker`).", icon=":material/pending:")
for endpoint in endpoints:
    state = "enabled" if endpoint.enabled else f"disabled: {endpoint.disabled_reason or 'by an admin'}"
    shown = redact(endpoint.url)  # a password in the URL is never shown
    with st.expander(f"{shown} · {state}", expanded=not endpoint.enabled):
        st.caption(f"{endpoint.description + ' · ' if endpoint.description else ''}events: "
                   f"{', '.join(endpoint.events) or 'all'} · id `{endpoint.id}` · added {when(endpoint.created)}")
        st.text_input("Signing secret", endpoint.secret, type="password", disabled=True, key=f"webhooks_secret_{endpoint.id}")
        row = st.container(horizontal=True)
        row.button("Send a test event", key=f"webhooks_test_{endpoint.id}", icon=":material/send:",
                   on_click=run, args=(dispatcher.send_test, endpoint.id))
        row.button("Disable" if endpoint.enabled else "Enable", key=f"webhooks_toggle_{endpoint.id}",
                   on_click=run, args=(registry.set_enabled, endpoint.id, not endpoint.enabled, "by an admin"))
        if row.button("Delete", key=f"webhooks_delete_{endpoint.id}", icon=":material/delete:"):
            ask_first("webhooks_confirm_delete", endpoint.id)
        if confirmed("webhooks_confirm_delete", endpoint.id, f"Delete the endpoint {shown}?",
                     "manage_webhooks", f"webhooks_{endpoint.id}"):
            registry.delete_endpoint(endpoint.id)
            st.rerun()

st.subheader("Delivery log")
only_failed = st.toggle("Failures only", key="webhooks_failed_only")
deliveries = registry.deliveries(limit=200, status=FAILED if only_failed else "")
if not deliveries:
    st.caption("No deliveries yet." if not only_failed else "No failed delivery.")
    st.stop()
st.dataframe(
    [{"created": when(d.created), "event": d.type, "url": redact(d.url), "status": d.status, "attempts": d.attempts,
      "last answer": str(d.last_code or "none"), "next attempt": when(d.next_at), "error": d.last_error, "id": d.id}
     for d in deliveries],
    hide_index=True, key="webhooks_log",
)
by_id = {d.id: d for d in deliveries}
picked = st.selectbox("Open a delivery", list(by_id), key="webhooks_delivery",
                      format_func=lambda i: f"{when(by_id[i].created)} · {by_id[i].type} · {by_id[i].status}")
delivery = by_id[picked]
st.code(delivery.payload, language="json")
if delivery.last_error:
    st.error(delivery.last_error)
st.button("Replay", key="webhooks_replay", icon=":material/replay:", on_click=run, args=(dispatcher.replay, delivery.id),
          disabled=not dispatcher.can_replay(delivery),
          help="Send it again, with the same webhook-id, on a fresh retry schedule: once it has ended, or when it is "
               "stuck pending (its attempt was never recorded, its job was lost).")
