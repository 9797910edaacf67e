"""Which customer messages wait for a person: the one place that reads and writes that status.

A customer message sent after its conversation was handed off gets no reply from the bot; it is
stored with the status WAITING_FOR_HUMAN, and stays waiting until an agent writes in the
conversation after it.
"""

from __future__ import annotations

from typing import Iterable

WAITING_FOR_HUMAN = "waiting_for_human"
AGENT_ROLE = "agent"  # the role of a message a person wrote from the handoff queue


def waiting_status() -> str:
    """The status stored on a customer message that waits for a person."""
    return WAITING_FOR_HUMAN


def awaiting_human(messages: Iterable[dict]) -> list[int]:
    """Positions of the customer messages still waiting for a person (no agent message after them)."""
    waiting: list[int] = []
    for index, message in enumerate(messages):
        if message.get("role") == AGENT_ROLE:
            waiting = []
        elif message.get("role") == "user" and message.get("status") == WAITING_FOR_HUMAN:
            waiting.append(index)
    return waiting


def as_shown(messages: list[dict]) -> list[dict]:
    """The messages with the waiting status left only on those still waiting (an agent answered the others)."""
    waiting = set(awaiting_human(messages))
    return [{**m, "status": ""} if m.get("status") == WAITING_FOR_HUMAN and i not in waiting else m
            for i, m in enumerate(messages)]
