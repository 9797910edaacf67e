"""Spending limits on the pages, with a real OpenAI-protocol server and the embedded Redis: the chat
counts each API turn, falls back to the offline backend over a limit and says when it resets; the
Stats page shows the spend against the limits."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import app_environment

from chatbot.access.spending import Limits, parse_prices
from devtools.servers.openai import OpenAIServer

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180
PRICES = "gpt-4o-mini=0.15/0.60"


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    with OpenAIServer("Refunds take 5 to 10 business days [1].", usage=(1000, 200)) as server, app_environment(
        tmp_path_factory.mktemp("spending-app"), OPENAI_API_KEY="sk-test-0000", OPENAI_BASE_URL=server.base_url,
        CHATBOT_REQUESTS_PER_MINUTE="2", CHATBOT_MODEL_PRICES=PRICES, CHATBOT_MAX_RETRIES="0",
    ) as data:
        yield server


@pytest.fixture
def limits(app_env):
    """Set the limits for one test (the settings' ones are read once per server)."""
    from ui.spending import get_spending

    spending = get_spending()
    usual = spending.limits

    def set_limits(**values) -> None:
        spending.limits = Limits(**{"requests_per_minute": 0, "prices": parse_prices(PRICES), **values})

    yield set_limits
    spending.limits = usual


def chat_on_openai() -> AppTest:
    at = AppTest.from_file(str(ROOT / "views" / "chat.py"), default_timeout=TIMEOUT).run()
    at.selectbox(key="chat_backend").select("openai").run()
    assert not at.exception
    return at


def ask(at: AppTest, text: str) -> str:
    """Send a message; the last reply's text and its caption (which names the backend)."""
    at.chat_input(key="chat_input").set_value(text).run()
    assert not at.exception
    reply = [m for m in at.chat_message if m.name == "assistant"][-1]
    return reply.markdown[0].value + " | " + " ".join(c.value for c in reply.caption)


def warnings(at: AppTest, part: str = "main") -> str:
    """The warnings the page shows: above the chat (`main`, the chat page's place for them) or in the sidebar."""
    return " ".join(w.value for w in getattr(at, part).warning)


def test_requests_a_minute_then_the_offline_backend_with_when_it_resets(app_env):
    from ui.spending import get_spending

    before = get_spending().today()
    at = chat_on_openai()
    assert "5 to 10 business days" in ask(at, "How long does a refund take?")
    assert "5 to 10 business days" in ask(at, "And for a gift card?")
    assert "requests a minute" in warnings(at) and "possible in" in warnings(at)
    assert "offline backend" in warnings(at)
    reply = ask(at, "Where is my parcel?")
    assert "Offline mode" in reply and "offline ·" in reply  # the chat keeps working
    today = get_spending().today()
    assert today["requests"] - before["requests"] == 2
    assert today["tokens"] - before["tokens"] == 2 * 1200
    assert today["cost"] - before["cost"] == pytest.approx(2 * (1000 * 0.15 + 200 * 0.60) / 1e6)
    # Another agent's browser session has its own minute.
    assert "5 to 10 business days" in ask(chat_on_openai(), "How long does a refund take?")


def test_tokens_per_conversation_then_a_new_conversation(app_env, limits):
    limits(conversation_tokens=1500)
    at = chat_on_openai()
    assert "business days" in ask(at, "How long does a refund take?")
    assert not warnings(at)
    assert "business days" in ask(at, "And the shipping fee?")  # 1,200 of 1,500 before this one
    assert "This conversation has used 2,400 of its 1,500 tokens" in warnings(at)
    assert "Offline mode" in ask(at, "Anything else?")
    at.button(key="new_conversation").click().run()
    assert not warnings(at)
    assert "business days" in ask(at, "How long does a refund take?")


def test_daily_limits_say_when_they_reset(app_env, limits):
    from ui.spending import get_spending

    limits(daily_cost=get_spending().today()["cost"])  # today's budget is spent
    at = chat_on_openai()
    assert "Today's spending limit of $" in warnings(at) and "midnight UTC" in warnings(at)
    assert "Offline mode" in ask(at, "How long does a refund take?")
    limits(daily_tokens=1)
    assert "Today's limit of 1 tokens" in warnings(chat_on_openai())


def test_the_offline_and_local_backends_are_not_limited(app_env, limits):
    limits(daily_tokens=1, conversation_tokens=1)
    at = AppTest.from_file(str(ROOT / "views" / "chat.py"), default_timeout=TIMEOUT).run()
    assert not warnings(at)
    assert "Offline mode" in ask(at, "How long does a refund take?")


def test_stats_shows_the_spend_against_the_limits(app_env, limits):
    from ui.spending import get_spending

    limits(daily_tokens=100_000, daily_cost=1.0, conversation_tokens=5000)
    today = get_spending().today()
    at = AppTest.from_file(str(ROOT / "views" / "stats.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert "API spending" in [s.value for s in at.subheader]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Tokens today"] == f"{today['tokens']:,.0f}"
    assert metrics["Estimated cost today"] == f"${today['cost']:,.2f}"
    bars = [p.proto.text for p in at.get("progress")]
    assert f"Today's tokens: {today['tokens']:,.0f} of 100,000" in bars[0] and "midnight UTC" in bars[0]
    assert bars[1].startswith("Today's cost: $")
    assert list(at.dataframe[-1].value["model"]) == ["gpt-4o-mini"]


def test_the_prompts_page_test_reply_is_metered_like_a_turn(app_env, limits):
    import time

    from ui.spending import get_spending

    def test_reply() -> AppTest:
        at = AppTest.from_file(str(ROOT / "views" / "prompts.py"), default_timeout=TIMEOUT)
        at.session_state["admin_since"] = time.time()
        at.run()
        at.text_area(key="prompts_test_query").input("How long does a refund take?").run()
        at.selectbox(key="prompts_test_backend").select("openai").run()
        at.button(key="prompts_test_send").click().run()
        assert not at.exception
        return at

    limits()
    before = get_spending().today()
    at = test_reply()
    assert "business days" in [m for m in at.chat_message if m.name == "assistant"][-1].markdown[0].value
    today = get_spending().today()
    assert (today["requests"] - before["requests"], today["tokens"] - before["tokens"]) == (1, 1200)
    limits(daily_tokens=1)  # spent: the next test reply comes from the offline backend, and says why
    at = test_reply()
    # The Prompts page has no place above a conversation: the limit is said in its sidebar.
    assert "Today's limit of 1 tokens" in warnings(at, "sidebar") and "offline backend" in warnings(at, "sidebar")
    assert "Offline mode" in [m for m in at.chat_message if m.name == "assistant"][-1].markdown[0].value
    assert get_spending().today()["requests"] == today["requests"]


def test_a_limit_reached_after_the_pages_check_still_stops_the_call(app_env, limits, monkeypatch):
    from chatbot.access.spending import Spending, Verdict
    from ui.spending import get_spending

    get_spending().record("earlier", "gpt-4o-mini", 100, 0)
    limits(daily_tokens=int(get_spending().today()["tokens"]))  # spent, but the page's look says otherwise:
    monkeypatch.setattr(Spending, "check", lambda self, *args: Verdict())  # as if another turn spent since
    sent = len(app_env.requests)
    at = chat_on_openai()
    at.chat_input(key="chat_input").set_value("How long does a refund take?").run()
    assert not at.exception
    assert len(app_env.requests) == sent  # the backend itself refused: nothing reached the provider
    assert any(e.value.startswith("No reply: Today's limit of") for e in at.error)  # says why
    assert at.button(key="resend_failed").label == "Send it again"  # the message is kept
    customer = [m for m in at.chat_message if m.name == "user"][-1]
    assert "How long does a refund take?" in customer.text[0].value
