"""What the chat page remembers between runs about messages that did not get through, and backends that failed.

- A message the page could not send (over the length limit, the conversation store down) is kept
  as a draft, editable, with a button that sends it again; nothing the agent typed is lost.
- A stored message whose turn failed or was interrupted gets a "Send it again" button.
- A backend that cannot answer any message until someone acts (nothing at its address, a refused
  key) is set aside for this browser session: the page says why, answers from the offline backend,
  and offers to try it again. Every backend behaves alike, whether it fails when built or when
  asked. A passing fault (a rate limit, a server error, a timeout, a cut stream) sets nothing aside:
  the failed message gets "Send it again", on the same backend.
"""

from __future__ import annotations

import streamlit as st

from chatbot.store.messages import Message, Status, unanswered as unanswered_message
from common.errors import BackendAuthError, BackendError, BackendUnreachable, StoreUnavailable
from ui.page_state import ChatKeys

OFFLINE_NOTICE = "Using the offline backend until this is fixed."


def keep_unsent(text: str, reason: str) -> None:
    """Keep a message that was not sent, with why, as an editable draft."""
    st.session_state[ChatKeys.UNSENT] = text
    st.session_state[ChatKeys.UNSENT_REASON] = reason
    st.session_state[ChatKeys.DRAFT] = text


def clear_unsent() -> None:
    for key in (ChatKeys.UNSENT, ChatKeys.UNSENT_REASON, ChatKeys.DRAFT):
        st.session_state.pop(key, None)


def queue(text: str, turn: str = "") -> None:
    """A button's callback: send `text` on the run it starts (as the stored message of `turn`, if given)."""
    st.session_state[ChatKeys.RESEND] = text
    st.session_state[ChatKeys.RESEND_TURN] = turn


def _queue_draft() -> None:
    queue(st.session_state.get(ChatKeys.DRAFT) or st.session_state.get(ChatKeys.UNSENT) or "")


def queued() -> tuple[str | None, str]:
    """The text a resend button asked to send on this run, once, and the turn it was the message of ("" for
    a draft that was never stored)."""
    return st.session_state.pop(ChatKeys.RESEND, None) or None, st.session_state.pop(ChatKeys.RESEND_TURN, "")


def render_unsent() -> None:
    """The kept draft: why it was not sent, the text to edit, and buttons to send it again or drop it."""
    if not st.session_state.get(ChatKeys.UNSENT):
        return
    reason = st.session_state.get(ChatKeys.UNSENT_REASON) or "This message has not been sent yet."
    st.warning(reason, icon=":material/drafts:")
    st.text_area("Unsent message", key=ChatKeys.DRAFT, help="Edit it if you need to, then send it again.")
    with st.container(horizontal=True):
        st.button("Send it again", key="resend_unsent", icon=":material/send:", type="primary", on_click=_queue_draft)
        st.button("Discard", key="discard_unsent", icon=":material/delete:", on_click=clear_unsent)


def unanswered(messages: list[Message]) -> Message | None:
    """The customer's message of the conversation's last turn when it got no whole reply, else None."""
    return unanswered_message(messages)


def pending_turn(messages: list[Message]) -> str:
    """The turn id of a customer message still waiting for its reply (in another tab, or a run being stopped)."""
    waiting = [m for m in messages if m.status is Status.PENDING]
    return waiting[-1].turn if waiting else ""


@st.fragment(run_every=1.0)
def watch_pending(store, session_id: str, turn: str) -> None:
    """Rerun the page once the reply of `turn` is stored (or the turn reads as interrupted).

    A rerun that stops a streaming reply starts the next run while the stopped one is still
    recording what arrived; this shows the turn as soon as it is recorded, and likewise a reply
    being written in another tab.
    """
    try:
        waiting = pending_turn([m for m in store.messages(session_id) if m.turn == turn])
    except StoreUnavailable:  # the page already says so; look again on the next tick
        return
    if not waiting:
        st.rerun()


def render_resend(message: Message) -> None:
    """"Send it again" for a message without a whole reply: one that got none is sent again as itself, the
    question of an interrupted reply as a new turn (the part that arrived stays, marked interrupted)."""
    turn = message.turn if message.failed else ""
    st.button("Send it again", key="resend_failed", icon=":material/replay:", on_click=queue,
              args=(message.content, turn), help="Send the customer's message once more, to the backend "
              "chosen now.")


# -- a backend that failed ----------------------------------------------------------------------


def cannot_answer(exc: BackendError) -> bool:
    """Whether every later message would fail alike: nothing answers at the address, or the key is refused."""
    return isinstance(exc, (BackendUnreachable, BackendAuthError))


def set_aside(choice: tuple, reason: str) -> None:
    """Answer from the offline backend instead of `choice` (name, model, folder, adapter) from now on."""
    st.session_state[ChatKeys.BACKEND_DOWN] = {"choice": list(choice), "reason": reason}


def set_aside_reason(choice: tuple) -> str:
    """Why `choice` was set aside in this session; empty when it was not."""
    down = st.session_state.get(ChatKeys.BACKEND_DOWN) or {}
    return down.get("reason", "") if down.get("choice") == list(choice) else ""


def _try_again() -> None:
    st.session_state.pop(ChatKeys.BACKEND_DOWN, None)


def render_fallback(name: str, reason: str, retry: bool = False, where=None) -> None:
    """The notice of a backend that cannot answer: why, and that the offline one answers.

    `where` is the container it goes in (the chat page's place above the conversation); the sidebar's end
    when not given.
    """
    where = where or st.sidebar
    where.error(f"**{name}**: {reason}", icon=":material/cloud_off:")
    where.info(OFFLINE_NOTICE, icon=":material/offline_bolt:")
    if retry:
        where.button(f"Try {name} again", key="retry_backend", icon=":material/refresh:", on_click=_try_again)
