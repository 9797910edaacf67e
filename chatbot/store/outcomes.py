"""What a finished reply was: an answer, one cut off at the token limit, a refusal, or no answer.

A backend says why it stopped (`Usage.stop_reason`); the Chatbot reads that with the reply's
text into the turn's outcome, stored in its metadata. Only an answer, whole or cut off, goes back
to the model in later turns: a blank reply would be sent back as an empty message (which the
Anthropic API refuses, so every later turn failed), and a refused message would be refused again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.types import Stop

if TYPE_CHECKING:
    from chatbot.store.messages import TurnMeta

ANSWER = "answer"
# Cut off at the token limit: stored and shown, marked as incomplete.
CUT_OFF = "cut_off"
# The model declined: shown as a refusal; neither it nor the message it refused reaches the model again.
REFUSAL = "refusal"
# No text, or only white space: nothing is stored as the assistant's reply.
EMPTY = "empty"

# What a refusal is stored as when the model gave no words of its own.
REFUSED_TEXT = "The model declined to answer this message."
# Where a cut-off reply ends, as the model sees it in later turns.
CUT_OFF_MARK = "[reply cut off at the token limit]"

NOTICES = {
    EMPTY: "No answer: the model returned an empty reply — send it again.",
    CUT_OFF: "The reply was cut off at the token limit: it may be incomplete. "
             "Ask for the rest, or raise the prompt's max tokens.",
    REFUSAL: "Refused: the model declined to answer this message. Rephrase it, or answer the customer yourself.",
}
EMPTY_AT_LIMIT = ("No answer: the model reached the token limit before writing any text — send it again, "
                  "or raise the prompt's max tokens.")


def read_outcome(text: str, stop_reason: str) -> str:
    """The outcome of a reply that streamed to its end, from its text and the backend's stop reason."""
    if stop_reason == Stop.REFUSAL:
        return REFUSAL
    if not text.strip():
        return EMPTY
    return CUT_OFF if stop_reason == Stop.LENGTH else ANSWER


def turn_texts(text: str, outcome: str, failed: bool) -> tuple[str | None, str | None]:
    """(the assistant message to store, what the model sees of it later); None where there is none.

    An outcome of "" (a turn no model answered, such as a handoff notice) counts as an answer.
    """
    if failed or outcome == EMPTY or not (text.strip() or outcome == REFUSAL):
        return None, None
    if outcome == REFUSAL:
        return text.strip() or REFUSED_TEXT, None
    if outcome == CUT_OFF:
        return text, f"{text.rstrip()} {CUT_OFF_MARK}"
    return text, text


def keeps_customer_message(outcome: str) -> bool:
    """Whether the model sees the customer's message in later turns: not one it refused."""
    return outcome != REFUSAL


def outcome_notice(meta: "TurnMeta | None") -> str:
    """The line shown with a reply that is not a plain answer; "" for an answer (or no metadata)."""
    if meta is None:
        return ""
    if meta.outcome == EMPTY and meta.stop_reason == Stop.LENGTH:
        return EMPTY_AT_LIMIT
    return NOTICES.get(meta.outcome, "")
