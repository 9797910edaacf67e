"""The offline backend answers from the demo knowledge base, quoting and citing it."""

from __future__ import annotations

from common.types import ChatRequest
from backends.offline import NOT_FOUND, NOTICE, OfflineBackend
from chatbot.turn.bot import Chatbot
from common.types import Passage


def test_refund_question_quotes_and_cites_the_demo_refund_article(demo_kb, store):
    bot = Chatbot(knowledge=demo_kb, backend=OfflineBackend(), store=store)
    reply = bot.ask("offline", "How do I get a refund?")
    assert reply.text.startswith(NOTICE)
    assert reply.meta.citations, reply.text
    first = reply.meta.sources[0]
    assert first["source"] == "refunds-how-to-request-a-refund.md"
    # The quoted lines are the cited passage's own words.
    first_block = reply.text.split("\n\n> ", 1)[1].split(" [1]", 1)[0]
    quote = [line.removeprefix("> ") for line in first_block.splitlines()]
    assert quote and all(line in first["text"] for line in quote)


def test_every_marker_points_at_the_passage_it_quotes():
    passages = [
        Passage("Parcels ship in 2 days. Tracking arrives by email.", "ship.md", "Shipping", 0, 0.9),
        Passage("Refunds reach your card in 5 days. Start one in Orders.", "refund.md", "Refunds", 0, 0.8),
    ]
    text = OfflineBackend().answer(ChatRequest(system="", messages=[], passages=passages, query="refund card"))
    blocks = text.split("\n\n")[1:]
    assert any("Refunds reach your card in 5 days." in b and b.endswith("[2]") for b in blocks)
    for block in blocks:
        if block.endswith("[1]"):
            assert "Parcels" in block


def test_nothing_found_says_so():
    text = OfflineBackend().answer(ChatRequest(system="", messages=[], passages=[], query="quantum"))
    assert NOT_FOUND in text
