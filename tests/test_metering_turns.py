"""Every paid call of a turn goes through the metered backend: the reply, the LLM classifier's fallback
and the running summary are each held, counted and settled; over a limit none reaches the provider."""

from __future__ import annotations

import json

import pytest

from chatbot.access.metering import metered_backend
from chatbot.access.spending import Limits, Spending
from chatbot.turn.bot import Chatbot
from common.errors import SpendingLimitReached
from tests.test_bot import abstaining, router, small_kb  # noqa: F401 - fixtures
from tests.test_metering import ApiFake

VERDICT = json.dumps({"intent": "shipping_orders", "confidence": 0.8, "secondary": [], "reasoning": "a parcel"})


def spending(store, **limits) -> Spending:
    return Spending(lambda: store.client, Limits(**{"requests_per_minute": 0, **limits}))


def test_the_classifier_fallback_the_reply_and_the_summary_are_all_metered(small_kb, store, router):  # noqa: F811
    spend = spending(store)
    inner = ApiFake([VERDICT, "It ships in 2 days [1].", "a2", "a3", "SUMMARY: a parcel"])
    backend = metered_backend(inner, spend, "session:a", "s1")
    bot = Chatbot(knowledge=small_kb, backend=backend, store=store, router=abstaining(router), window_messages=4)
    bot.ask("s1", "what about the box")  # the router abstains: the backend classifies, then replies
    assert spend.today()["requests"] == 2
    bot.ask("s1", "q2")  # classify (the scripted reply is not JSON: asked twice), reply
    bot.ask("s1", "q3")
    sent = len(inner.requests)
    assert spend.today()["requests"] == sent and any("Summarise" in r.system for r in inner.requests)
    assert spend.today()["tokens"] == spend.conversation("s1")["tokens"] > 0


def test_over_a_limit_no_call_of_the_turn_reaches_the_provider(small_kb, store, router):  # noqa: F811
    spend = spending(store, daily_tokens=1000)
    spend.record("earlier", "m", 1000, 0)
    inner = ApiFake([VERDICT, "It ships in 2 days [1]."])
    bot = Chatbot(knowledge=small_kb, backend=metered_backend(inner, spend, "session:a", "s1"), store=store,
                  router=abstaining(router))
    reply = bot.send("s1", "what about the box")
    with pytest.raises(SpendingLimitReached, match="Today's limit of 1,000 tokens"):
        list(reply)
    assert not inner.requests  # neither the classification nor the reply was sent
    stored = store.messages("s1")
    assert stored[-1].role == "user" and "limit" in stored[-1].meta.error  # kept, to send again
