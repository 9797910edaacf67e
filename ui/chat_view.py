"""Rendering pieces of the chat page: messages, sources, sidebar stats."""

from __future__ import annotations

import streamlit as st


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def render_sources(meta: dict) -> None:
    """The passages a reply cited, under it, each with the number it was cited by."""
    retrieved = meta.get("retrieved") or []
    cited = meta.get("citations") or []
    if not retrieved:
        return
    label = f"Sources ({len(cited)} cited)" if cited else f"Sources ({len(retrieved)} retrieved, none cited)"
    with st.expander(label):
        numbers = cited or range(1, len(retrieved) + 1)
        for n in numbers:
            p = retrieved[n - 1]
            where = f"{p['title']} › {p['heading']}" if p.get("heading") else p["title"]
            st.markdown(f"**[{n}] {where}**  \n`{p['source']}` · chunk {p['chunk']} · score {p['score']:.2f}")
            st.caption(p["text"][:600] + ("…" if len(p["text"]) > 600 else ""))


def render_reply_caption(meta: dict) -> None:
    parts = [f"{meta.get('backend')} · {meta.get('model')}", f"{meta.get('latency_ms', 0):,.0f} ms"]
    if meta.get("ttft_ms"):
        parts.append(f"first token {meta['ttft_ms']:,.0f} ms")
    if meta.get("output_tokens"):
        parts.append(f"{meta.get('input_tokens', 0)} → {meta['output_tokens']} tokens")
    if meta.get("prompt_name"):
        parts.append(f"prompt {meta['prompt_name']} v{meta.get('prompt_version')}")
    st.caption(" · ".join(parts))


def render_message(message: dict) -> None:
    """One stored message as a chat bubble."""
    role = message["role"]
    meta = message.get("meta") or {}
    with st.chat_message(role, avatar=":material/person:" if role == "user" else ":material/support_agent:"):
        st.markdown(message["content"])
        if role == "assistant":
            render_sources(meta)
            render_reply_caption(meta)
    if role == "user" and meta.get("error"):
        with st.chat_message("assistant", avatar=":material/error:"):
            st.error(f"No reply: {meta['error']}")


def render_stats(stats: dict) -> None:
    """The sidebar's live numbers for the current conversation."""
    st.subheader("This conversation")
    a, b = st.columns(2)
    a.metric("Turns", stats["turns"])
    b.metric("Retrievals", stats["retrievals"])
    a.metric("Tokens in", f"{stats['tokens_in']:,}")
    b.metric("Tokens out", f"{stats['tokens_out']:,}")
    a.metric("Last latency", _ms(stats["last_latency_ms"]))
    b.metric("Mean latency", _ms(stats["mean_latency_ms"]))
    a.metric("First token", _ms(stats["last_ttft_ms"]))
    b.metric("Mean first token", _ms(stats["mean_ttft_ms"]))
    if stats["backend"]:
        st.caption(f"Backend **{stats['backend']}** · model **{stats['model']}**")
    if stats["failed_turns"]:
        st.caption(f"{stats['failed_turns']} turn(s) failed to get a reply")
