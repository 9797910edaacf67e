"""The support desk assistant's core: one Chatbot turn, headless, no Streamlit."""

__all__ = ["Chatbot", "Reply", "TurnMeta"]


def __getattr__(name: str):
    # Lazy, so that `adapters` and `knowledge` can import chatbot.errors without a cycle.
    if name in __all__:
        from chatbot import bot

        return getattr(bot, name)
    raise AttributeError(name)
