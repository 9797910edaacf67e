"""One Chatbot turn: validation, retrieval, prompt, streaming, citations, persistence, memory."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from chatbot.turn.bot import Chatbot, clean_message, cited_numbers
from common.errors import BackendUnavailable, InputRejected
from chatbot.prompts.library import PromptLibrary
from tests.fakes import FakeBackend
from tests.test_store import PASSWORDS, REFUNDS


@pytest.fixture
def small_kb(kb):
    kb.ingest_upload("refunds.md", REFUNDS)
    kb.ingest_upload("passwords.md", PASSWORDS)
    return kb


def make_bot(kb, store, backend, **kwargs):
    return Chatbot(knowledge=kb, backend=backend, store=store, **kwargs)


def test_a_turn_streams_a_cited_reply_and_persists_it(small_kb, store):
    backend = FakeBackend(["You can ask within 30 days [1]. Use the app [2]."])
    bot = make_bot(small_kb, store, backend, top_k=2)
    reply = bot.send("s1", "How do I get my money back?")
    pieces = list(reply)
    assert len(pieces) > 3 and "".join(pieces) == reply.text
    # The model was sent the numbered passages and the question.
    sent = backend.requests[0]
    assert '<passage id="1" source="refunds.md"' in sent.system
    assert sent.messages[-1] == {"role": "user", "content": "How do I get my money back?"}
    # The general template's settings against loops reach the backend with its temperature and budget.
    assert (sent.repetition_penalty, sent.no_repeat_ngram_size, sent.max_tokens) == (1.2, 6, 600)
    meta = reply.meta
    assert meta.citations == [1, 2]
    assert [s["n"] for s in meta.sources] == [1, 2]
    assert meta.sources[0]["source"] == "refunds.md"
    assert meta.backend == "fake" and meta.output_tokens > 0
    assert meta.ttft_ms > 0 and meta.latency_ms >= meta.ttft_ms
    assert set(meta.stages_ms) == {"validate", "embed", "route", "retrieve", "render", "first_token", "persist"}
    assert meta.prompt_name == "general" and len(meta.prompt_hash) == 64
    stored = store.messages("s1")
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[1].meta.citations == [1, 2]


def test_citation_markers_out_of_range_are_ignored():
    assert cited_numbers("See [2], then [9] and [2] again, and [1].", 3) == [2, 1]


def test_empty_message_is_ignored_and_long_message_refused(small_kb, store):
    bot = make_bot(small_kb, store, FakeBackend(), max_message_chars=50)
    assert bot.send("s1", "   \n\t ") is None
    with pytest.raises(InputRejected, match="the limit is 50"):
        bot.send("s1", "x" * 51)
    assert store.messages("s1") == []


def test_control_characters_are_stripped():
    assert clean_message("  he\x00llo\x1b[31m\u200bworld\n ", 100) == "hello[31mworld"


def test_backend_failure_keeps_the_users_message_and_the_conversation(small_kb, store):
    backend = FakeBackend([BackendUnavailable("The model server answered 500."), "Fine now [1]."])
    bot = make_bot(small_kb, store, backend)
    reply = bot.send("s1", "Reset my password please")
    with pytest.raises(BackendUnavailable):
        reply.consume()
    stored = store.messages("s1")
    assert stored[0].content == "Reset my password please"
    assert "500" in stored[0].meta.error
    # The next turn works and still carries the failed message as context.
    second = bot.ask("s1", "Are you there?")
    assert second.text == "Fine now [1]."
    assert backend.requests[1].messages[0]["content"] == "Reset my password please"


def test_old_turns_are_summarised_by_the_backend(small_kb, store):
    backend = FakeBackend(["a1", "a2", "a3", "SUMMARY: asked about refunds", "a4"])
    bot = make_bot(small_kb, store, backend, window_messages=4)
    for text in ("q1", "q2", "q3"):
        bot.ask("s1", text)
    # The fourth request is the summariser's, sent after the third reply.
    assert "Summarise the conversation" in backend.requests[3].system
    assert "user: q1" in backend.requests[3].messages[0]["content"]
    reply = bot.ask("s1", "q4")
    sent = backend.requests[4]
    assert "<conversation_summary>\nSUMMARY: asked about refunds\n</conversation_summary>" in sent.system
    assert [m["content"] for m in sent.messages] == ["q2", "a2", "q3", "a3", "q4"]
    assert reply.meta.summarised_messages == 2


def test_offline_style_backends_summarise_extractively(small_kb, store):
    backend = FakeBackend(["Answer one.", "Answer two.", "Answer three."], can_summarise=False)
    bot = make_bot(small_kb, store, backend, window_messages=4)
    for text in ("First question here. Extra.", "Second.", "Third."):
        bot.ask("s1", text)
    assert len(backend.requests) == 3  # no summariser call
    memory = bot.memory_for("s1")
    assert memory.summary == "- Customer: First question here.\n- Assistant: Answer one."


def test_two_chatbots_share_one_store(small_kb, store):
    first = make_bot(small_kb, store, FakeBackend(["one"]))
    second = make_bot(small_kb, store, FakeBackend(["two"]))
    first.ask("shared", "hello")
    second.ask("shared", "again")
    assert [m.content for m in store.messages("shared")] == ["hello", "one", "again", "two"]
    assert [m["content"] for m in second.backend.requests[0].messages] == ["hello", "one", "again"]


class ReasoningPrompts(PromptLibrary):
    """The shipped templates, with chain of thought switched on for every turn."""

    def render(self, name, **kwargs):
        return dataclasses.replace(super().render(name, **kwargs), chain_of_thought=True)


def test_reasoning_never_reaches_the_customer_the_store_or_the_citations(small_kb, store):
    backend = FakeBackend(["<thinking>Passage [2] is about passwords, ignore it.</thinking>Ask within 30 days [1]."])
    bot = make_bot(small_kb, store, backend, prompts=ReasoningPrompts())
    reply = bot.send("s1", "refund?")
    shown = "".join(reply)
    assert shown == "Ask within 30 days [1]."
    assert reply.meta.citations == [1]
    assert store.messages("s1")[1].content == "Ask within 30 days [1]."


def test_turn_records_the_production_prompt_version(small_kb, store, tmp_path, embedder):
    from chatbot.prompts.library import open_prompt_library

    library = open_prompt_library(tmp_path / "data", embedder)
    template, version = library.get("general")
    reply = make_bot(small_kb, store, FakeBackend(["ok"]), prompts=library).ask("s1", "hello")
    assert (reply.meta.prompt_name, reply.meta.prompt_version) == ("general", version)
    assert reply.meta.prompt_hash == template.content_hash()


@pytest.fixture(scope="module")
def router(embedder, tmp_path_factory):
    from chatbot.routing.routes import default_routes_path, load_routes
    from chatbot.routing.router import router_for_routes

    return router_for_routes(load_routes(default_routes_path()), embedder, tmp_path_factory.mktemp("router"))


def test_the_routed_intent_picks_the_template_and_is_recorded(small_kb, store, router):
    backend = FakeBackend(["Refunds take 5-10 days [1]."])
    bot = make_bot(small_kb, store, backend, router=router)
    reply = bot.ask("s1", "I was charged twice for my subscription this month")
    assert reply.meta.route["intent"] == "billing"
    assert reply.meta.prompt_name == "billing"
    assert reply.meta.triage["sentiment"] and 1 <= reply.meta.triage["priority"] <= 10
    # The customer context reaches the model.
    assert "<customer>" in backend.requests[0].system and "Priority: " in backend.requests[0].system
    stored = store.state("s1")["triage"]
    assert stored["state"] == "resolving" and stored["intents"] == ["billing"]


def test_escalation_hands_off_once_then_the_bot_stays_silent(small_kb, store, router):
    backend = FakeBackend(["First answer [1]."])
    bot = make_bot(small_kb, store, backend, router=router)
    bot.ask("s1", "My camera is offline")
    handoff = bot.ask("s1", "This is useless, I want to speak to a real person now")
    assert handoff.meta.handed_off and "human requested" in handoff.meta.triage["reasons"]
    assert "member of our support team" in handoff.text
    assert len(backend.requests) == 1  # no model call for the handoff
    summary = store.state("s1")["triage"]["handoff_summary"]
    assert summary.startswith("Escalated: human requested") and "First message: My camera is offline" in summary
    silent = bot.ask("s1", "hello? anyone?")
    assert silent.text == "" and silent.meta.handed_off
    stored = store.messages("s1")
    assert [m.role for m in stored] == ["user", "assistant", "user", "assistant", "user"]
    assert stored[-1].content == "hello? anyone?"  # kept for the human
    assert len(backend.requests) == 1


def abstaining(router):
    """The shipped router with thresholds no answer reaches: it abstains on every message."""
    unsure = copy.copy(router)
    unsure.thresholds = {name: 1.01 for name in router.thresholds}
    return unsure


def test_an_abstained_message_is_classified_by_the_backend_with_the_classifier_template(small_kb, store, router):
    import json

    verdict = {"intent": "shipping_orders", "confidence": 0.8, "secondary": [], "reasoning": "asks about a parcel"}
    backend = FakeBackend([json.dumps(verdict), "It ships in 2 days [1]."])
    unsure = abstaining(router)
    bot = make_bot(small_kb, store, backend, router=unsure)
    reply = bot.ask("s1", "what about the box")
    assert unsure.route("what about the box", small_kb.embedder.embed_one("what about the box")).abstained
    classify = backend.requests[0]
    assert classify.json_mode and classify.temperature == 0
    assert "You classify one customer-support message" in classify.system
    assert "- shipping_orders:" in classify.system and "{intents}" not in classify.system
    assert reply.meta.route["intent"] == "shipping_orders" and reply.meta.route["source"] == "llm"


def test_grouped_markers_are_recorded_and_listed_as_sources(demo_kb, store):
    # A model groups its markers: "[1, 2]" cites passages 1 and 2, then "[3]" passage 3.
    reply_text = ("A duplicate charge is refunded to the original payment method [1, 2]. "
                  "Send us both invoice numbers so we can confirm it [3].")
    bot = make_bot(demo_kb, store, FakeBackend([reply_text]), top_k=4)
    reply = bot.ask("grouped", "I was charged twice for the same order, what now?")
    assert len(reply.meta.retrieved) >= 3
    assert reply.meta.citations == [1, 2, 3]
    assert [s["n"] for s in reply.meta.sources] == [1, 2, 3]
    assert store.messages("grouped")[1].meta.citations == [1, 2, 3]
