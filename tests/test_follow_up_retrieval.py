"""Follow-up questions retrieve what the conversation is about; new questions keep their own topic."""

from __future__ import annotations

import json

from chatbot.turn.bot import Chatbot
from chatbot.turn.contextual_search import search_in_context
from cli.main import main
from tests.fakes import FakeBackend


def sources(passages) -> list[str]:
    return [p.source for p in passages]


def test_a_follow_up_is_searched_with_the_previous_message(demo_kb):
    text = "And how much does it cost?"
    vector = demo_kb.embedder.embed_one(text)
    found = sources(search_in_context(demo_kb, text, vector, ["How long does delivery to Germany take?"], 4))
    assert found[0].startswith("shipping-"), found
    assert "subscription-nimbus-plus-plans.md" not in found[:1]
    # Without its conversation the same words find the subscription prices.
    assert sources(search_in_context(demo_kb, text, vector, [], 4))[0] == "subscription-nimbus-plus-plans.md"


def test_a_new_topic_is_not_pulled_back_to_the_old_one(demo_kb):
    text = "How do I reset my password?"
    vector = demo_kb.embedder.embed_one(text)
    found = sources(search_in_context(demo_kb, text, vector, ["How long does delivery to Germany take?"], 4))
    assert found[0] == "account-reset-password.md"


def test_the_second_turn_of_a_chat_cites_the_delivery_article(demo_kb, store):
    backend = FakeBackend(["Delivery to Germany takes 3 to 5 days [1].", "It costs 9.95 EUR [1]."])
    bot = Chatbot(knowledge=demo_kb, backend=backend, store=store, top_k=3)
    bot.ask("c", "How long does delivery to Germany take?")
    reply = bot.ask("c", "And how much does it cost?")
    assert reply.meta.sources[0]["source"].startswith("shipping-"), reply.meta.sources
    assert sources(backend.requests[1].passages)[0].startswith("shipping-")


def test_evaluate_follow_ups_reports_both_methods_per_kind(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path))
    assert main(["evaluate-follow-ups", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    follow, alone = report["follow-up_in_context"], report["follow-up_alone"]
    assert follow["queries"] >= 30 and report["switch_in_context"]["queries"] >= 10
    assert follow["mrr"] > alone["mrr"] and follow["hit_at_k"] > alone["hit_at_k"]
    assert report["switch_in_context"]["hit_at_k"] >= report["switch_alone"]["hit_at_k"]
