"""The end of a turn is the Chatbot's hook; a preview renders a turn exactly as the chat would, unstored."""

from __future__ import annotations

from chatbot.turn.bot import Chatbot
from chatbot.prompts.library import PromptLibrary
from common.settings import Settings
from tests.fakes import FakeBackend
from tests.test_bot import small_kb  # noqa: F401  (fixture)


def test_a_preview_sends_what_the_first_turn_of_a_chat_sends_and_stores_nothing(small_kb, store):  # noqa: F811
    prompts = PromptLibrary()
    backend = FakeBackend(["Within 30 days [1].", "Within 30 days [1]."])
    bot = Chatbot(knowledge=small_kb, backend=backend, store=store, prompts=prompts, top_k=2)
    template, version = prompts.get("general")
    preview = bot.preview("How do I get my money back?", template=template, version=version, top_k=2)
    assert preview.reply.consume() == "Within 30 days [1]."
    assert preview.reply.meta.citations == [1]
    assert store.recent(limit=10) == []  # nothing stored, no conversation created

    bot.ask("real", "How do I get my money back?")
    previewed, chatted = backend.requests
    assert previewed.system == chatted.system
    assert previewed.messages == chatted.messages
    assert (previewed.temperature, previewed.max_tokens) == (chatted.temperature, chatted.max_tokens)
    assert [p.source for p in preview.passages] == [p.source for p in chatted.passages]


def test_a_preview_renders_an_unsaved_template_with_the_customer_tier(small_kb, store):  # noqa: F811
    prompts = PromptLibrary()
    bot = Chatbot(knowledge=small_kb, backend=FakeBackend(), store=store, prompts=prompts)
    template, _ = prompts.get("general")
    preview = bot.preview("my password does not work", template=template, version=0, customer_tier="business")
    assert "Account tier: business" in preview.prompt.system
    assert preview.prompt.version == 0 and preview.reply.meta.prompt_version == 0


def test_deployment_generation_settings_override_every_template(small_kb, store, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CHATBOT_TEMPERATURE", "0")
    monkeypatch.setenv("CHATBOT_MAX_TOKENS", "123")
    settings = Settings.load(secrets={})
    assert (settings.temperature, settings.max_tokens) == (0.0, 123)
    backend = FakeBackend(["ok"])
    bot = Chatbot(knowledge=small_kb, backend=backend, store=store, temperature=settings.temperature,
                  max_tokens=settings.max_tokens)
    bot.ask("s", "How do I get my money back?")
    assert (backend.requests[0].temperature, backend.requests[0].max_tokens) == (0.0, 123)


def test_without_overrides_the_template_generation_settings_apply(small_kb, store, monkeypatch):  # noqa: F811
    monkeypatch.delenv("CHATBOT_TEMPERATURE", raising=False)
    monkeypatch.delenv("CHATBOT_MAX_TOKENS", raising=False)
    settings = Settings.load(secrets={})
    assert settings.temperature is None and settings.max_tokens is None
    prompts = PromptLibrary()
    backend = FakeBackend(["ok"])
    bot = Chatbot(knowledge=small_kb, backend=backend, store=store, prompts=prompts)
    bot.ask("s", "How do I get my money back?")
    template, _ = prompts.get("general")
    assert backend.requests[0].max_tokens == template.max_tokens
    assert backend.requests[0].temperature == template.temperature


def test_the_turn_end_hook_runs_once_with_whether_the_stream_failed(small_kb, store):  # noqa: F811
    bot = Chatbot(knowledge=small_kb, backend=FakeBackend(["fine"]), store=store)
    ended = []
    original = bot.end_turn
    bot.end_turn = lambda reply, memory, failed, *sent: (ended.append(failed), original(reply, memory, failed, *sent))
    reply = bot.send("s", "hello there, how do refunds work?")
    reply.consume()
    reply.consume()  # a second read streams nothing and stores nothing
    assert ended == [False]
    assert [m.role for m in store.messages("s")] == ["user", "assistant"]
