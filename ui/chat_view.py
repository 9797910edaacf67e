"""Rendering pieces of the chat page: messages, sources, sidebar stats."""

from __future__ import annotations

import streamlit as st

from common.wording import plural
from chatbot.handoff.status import AGENT_ROLE
from chatbot.store.messages import Message, Status, TurnMeta
from chatbot.turn.citations import cited_numbers
from chatbot.store.outcomes import CUT_OFF, REFUSAL, outcome_notice


def _ms(value: float | None) -> str:
    """A duration short enough for a sidebar metric (six characters at most): 840 ms, 2.35 s, 41.2 s, 312 s."""
    if value is None:
        return "–"
    if value < 999.5:
        return f"{value:.0f} ms"
    seconds = value / 1000
    return f"{seconds:.2f} s" if seconds < 9.995 else f"{seconds:.1f} s" if seconds < 99.95 else f"{seconds:,.0f} s"


def _count(value: int) -> str:
    """A count short enough for a sidebar metric: 1,057, then 12.3k and 1.2M."""
    if value < 10_000:
        return f"{value:,}"
    return f"{value / 1000:.1f}k" if value < 999_950 else f"{value / 1_000_000:.1f}M"


def render_sources(meta: TurnMeta, text: str = "") -> None:
    """The passages a reply cited, under it, each with the number it was cited by.

    The numbers are read from the reply's text when it is given (a reply stored before a marker
    form such as [1, 2] or [1-3] was recognised then lists its sources too); out-of-range numbers
    are never shown.
    """
    retrieved = meta.retrieved
    if not retrieved:
        return
    if text:
        cited = cited_numbers(text, len(retrieved))
    else:
        cited = [n for n in dict.fromkeys(meta.citations) if 1 <= n <= len(retrieved)]
    label = f"Sources ({len(cited)} cited)" if cited else f"Sources ({len(retrieved)} retrieved, none cited)"
    with st.expander(label):
        numbers = cited or range(1, len(retrieved) + 1)
        for n in numbers:
            p = retrieved[n - 1]
            where = f"{p['title']} › {p['heading']}" if p.get("heading") else p["title"]
            st.markdown(f"**[{n}] {where}**  \n`{p['source']}` · chunk {p['chunk']} · score {p['score']:.2f}")
            st.caption(p["text"][:600] + ("…" if len(p["text"]) > 600 else ""))


def render_reply_caption(meta: TurnMeta) -> None:
    st.caption(reply_caption(meta))


OUTCOME_ICONS = {CUT_OFF: ":material/content_cut:", REFUSAL: ":material/block:"}


def render_outcome(meta: TurnMeta | None) -> None:
    """The notice under a reply that is not a plain answer: empty, cut off or refused."""
    notice = outcome_notice(meta)
    if notice and meta is not None:
        st.warning(notice, icon=OUTCOME_ICONS.get(meta.outcome, ":material/chat_error:"))


def reply_caption(meta: TurnMeta) -> str:
    """The line under a reply: backend, model, latency, first token, tokens and prompt version."""
    # A handed-off turn has no model: no empty slot in the caption.
    source = [value for value in (meta.backend, meta.model) if value]
    parts = [*source, f"{meta.latency_ms:,.0f} ms"]
    if meta.ttft_ms:
        parts.append(f"first token {meta.ttft_ms:,.0f} ms")
    if meta.output_tokens:
        parts.append(f"{meta.input_tokens:,} → {plural(meta.output_tokens, 'token')}")
    if meta.prompt_name:
        parts.append(f"prompt {meta.prompt_name} v{meta.prompt_version}")
    return " · ".join(parts)


SENTIMENT_COLOURS = {"very_negative": "red", "negative": "orange", "neutral": "gray", "positive": "green",
                     "very_positive": "green"}


def render_triage(meta: TurnMeta | None) -> None:
    """Badges for how a customer message was triaged, and the router's scores."""
    if meta is None:
        return
    route, triage = meta.route, meta.triage
    if not triage:
        return
    badges = st.container(horizontal=True, gap="small")
    intent = route.get("intent", "unknown")
    label = f"{intent.replace('_', ' ')} · {route.get('confidence', 0):.0%}" if route else "not routed"
    if route.get("source") == "llm":
        label += " · by the model"
    badges.badge(label, icon=":material/alt_route:", color="gray" if intent == "unknown" else "blue")
    sentiment = triage.get("sentiment", "neutral")
    badges.badge(f"{sentiment.replace('_', ' ')} · {triage.get('trend', 'stable')}", icon=":material/mood:",
                 color=SENTIMENT_COLOURS.get(sentiment, "gray"))
    priority = triage.get("priority", 1)
    badges.badge(f"priority {priority}/10", icon=":material/flag:",
                 color="red" if priority >= 8 else "orange" if priority >= 5 else "gray")
    if triage.get("escalate") and triage.get("reasons"):
        badges.badge("escalated: " + ", ".join(triage["reasons"]), icon=":material/support_agent:", color="red")
    if route.get("scores"):
        with st.expander("Routing scores"):
            st.dataframe(
                [{"intent": name, "score": round(score, 3)} for name, score in route["scores"]],
                hide_index=True, width="stretch",
            )
            if route.get("abstained"):
                st.caption("No intent was confident enough: the reply used the general template.")


def render_message(message: Message, triage_meta: TurnMeta | None = None, feedback=None) -> None:
    """One stored message as a chat bubble; `triage_meta` is the turn's metadata for a customer message."""
    meta = message.meta
    if message.role == AGENT_ROLE:  # a person on the support team wrote it, from the handoff queue
        _render_agent_message(message)
        return
    with st.chat_message(message.role, avatar=":material/person:" if message.is_user else ":material/support_agent:"):
        if message.is_user:
            st.text(message.content)  # exactly what the customer typed: `__x__`, `--` and `# x` stay as typed
            render_triage(triage_meta or meta)
            if message.status is Status.WAITING_FOR_HUMAN:
                st.caption(":material/hourglass_top: Waiting for a person", help="The conversation was handed off: "
                           "an agent answers it from the Handoff queue page.")
            if message.status is Status.PENDING:
                st.caption("Waiting for the reply…", help="It is being written in another tab or process.")
        else:
            st.markdown(message.content)  # the assistant writes Markdown (lists, bold, citations)
            _render_reply_notes(message)
            if feedback is not None:
                feedback()
    if message.is_user and meta is not None and meta.error:
        with st.chat_message("assistant", avatar=":material/error:"):
            st.error(f"No reply: {meta.error}")
    elif message.is_user and outcome_notice(meta):  # the reply was empty: nothing was stored but this
        with st.chat_message("assistant", avatar=":material/error:"):
            render_outcome(meta)


def _render_agent_message(message: Message) -> None:
    """A person's reply, written from the handoff queue or a help desk."""
    with st.chat_message(AGENT_ROLE, avatar=":material/headset_mic:"):
        st.markdown(message.content)
        agent = message.meta.agent if message.meta is not None else ""
        st.caption(f"Written by {agent or 'an agent'}, a person on the support team")


def _render_reply_notes(message: Message) -> None:
    """Under a reply: its outcome, whether it was interrupted, its sources and its caption."""
    meta = message.meta or TurnMeta(created_at=0.0)
    render_outcome(meta)
    if message.status is Status.INTERRUPTED:
        st.warning(f"**Interrupted.** {meta.error} The text above is what arrived before it stopped.",
                   icon=":material/content_cut:")
    render_sources(meta, message.content)
    render_reply_caption(meta)


def render_handoff(triage_state: dict) -> None:
    """The banner of a conversation handed to a human, with the brief written for them."""
    st.error(
        f"**Handed off to a human.** Reason: {triage_state.get('escalation_reason') or 'escalated'}. "
        "The assistant no longer drafts replies in this conversation.", icon=":material/support_agent:",
    )
    if triage_state.get("handoff_summary"):
        with st.expander("Handoff summary for the agent", expanded=True):
            st.text(triage_state["handoff_summary"])


def render_stats(stats: dict, state: str = "") -> None:
    """The sidebar's live numbers for the current conversation."""
    st.subheader("This conversation")
    if state:
        st.caption(f"State: **{state}**")
    a, b = st.columns(2)
    a.metric("Turns", stats["turns"])
    b.metric("Retrievals", stats["retrievals"])
    # A sidebar column is about 110 px wide: values stay six characters or less, or they are cut off.
    a.metric("Tokens in", _count(stats["tokens_in"]))
    b.metric("Tokens out", _count(stats["tokens_out"]))
    a.metric("Last latency", _ms(stats["last_latency_ms"]))
    b.metric("Mean latency", _ms(stats["mean_latency_ms"]))
    a.metric("First token", _ms(stats["last_ttft_ms"]))
    b.metric("Mean first token", _ms(stats["mean_ttft_ms"]))
    if stats["backend"]:
        model = f" · model **{stats['model']}**" if stats["model"] else ""
        st.caption(f"Backend **{stats['backend']}**{model}")
    if stats["failed_turns"]:
        st.caption(f"{plural(stats['failed_turns'], 'turn')} failed to get a reply")
