"""The support desk assistant's core: one Chatbot turn, headless, no Streamlit."""

from chatbot.turn.bot import Chatbot, Reply, TurnMeta

__all__ = ["Chatbot", "Reply", "TurnMeta"]
