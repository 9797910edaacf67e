"""Which customer messages wait for a person: the one place that reads that status for the handoff.

A customer message sent after its conversation was handed off gets no reply from the bot; it is
stored with its turn's metadata and reads as `Status.WAITING_FOR_HUMAN` (chatbot/store/messages.py),
and stays waiting until an agent writes in the conversation after it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from chatbot.store.messages import AGENT, Message, Status

WAITING_FOR_HUMAN = Status.WAITING_FOR_HUMAN
AGENT_ROLE = AGENT  # the role of a message a person wrote from the handoff queue


def awaiting_human(messages: Iterable[Message]) -> list[int]:
    """Positions of the customer messages still waiting for a person (no agent message after them)."""
    waiting: list[int] = []
    for index, message in enumerate(messages):
        if message.role == AGENT_ROLE:
            waiting = []
        elif message.is_user and message.status is Status.WAITING_FOR_HUMAN:
            waiting.append(index)
    return waiting


def as_shown(messages: list[Message]) -> list[Message]:
    """The messages with the waiting status left only on those still waiting (an agent answered the others)."""
    waiting = set(awaiting_human(messages))
    return [replace(m, status=Status.ANSWERED) if m.is_user and m.status is Status.WAITING_FOR_HUMAN
            and i not in waiting else m for i, m in enumerate(messages)]
