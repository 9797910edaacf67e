"""The support desk assistant's core: one Chatbot turn, headless, no Streamlit.

`Chatbot`, `Reply` and `TurnMeta` are imported on first use, so `python -m chatbot COMMAND` loads
only what its command needs (`train` never loads the chat core).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["Chatbot", "Reply", "TurnMeta"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module("chatbot.turn.bot"), name)
    raise AttributeError(f"module 'chatbot' has no attribute {name!r}")
