"""The handoff queue: an escalation opens a case with its own triage, agents claim it (one wins),
answer as a person, and close it or hand it back; customer messages meanwhile wait and are counted."""

from __future__ import annotations

import threading

import pytest

from chatbot.handoff.queue import CLAIMED, HandoffConflict, HandoffQueue
from chatbot.handoff.status import WAITING_FOR_HUMAN, awaiting_human
from chatbot.store.messages import Status
from chatbot.turn.bot import Chatbot
from common.errors import InputRejected
from tests.fakes import FakeBackend
from tests.test_bot import router, small_kb  # noqa: F401  (fixtures)

ANGRY = "This is useless, I want to speak to a real person now"


class Events(list):
    def __call__(self, event_type: str, data: dict) -> None:
        self.append((event_type, data))

    def of(self, event_type: str) -> list[dict]:
        return [data for kind, data in self if kind == event_type]


@pytest.fixture
def desk(small_kb, store, router):  # noqa: F811
    events = Events()
    queue = HandoffQueue(store, events)
    bot = Chatbot(knowledge=small_kb, backend=FakeBackend(["First answer [1]."] * 5), store=store, router=router,
                  events=events, handoff=queue)
    return bot, queue, events


def test_an_escalation_opens_a_case_with_the_escalations_triage(desk, store):
    bot, queue, events = desk
    bot.ask("s1", "My camera is offline")
    escalating = bot.ask("s1", ANGRY)
    bot.ask("s1", "Thank you so much, that is wonderful, you are great")  # a happier later message
    bot.ask("s1", "hello? anyone?")
    [case] = queue.open_cases()
    assert case.conversation == "s1" and case.status == "waiting"
    assert case.reasons == escalating.meta.triage["reasons"] and "human requested" in case.reasons
    assert case.sentiment == escalating.meta.triage["sentiment"]
    assert case.priority == escalating.meta.triage["priority"]
    assert case.brief.startswith("Escalated: human requested") and case.message == ANGRY
    assert case.waiting == 2  # the two messages after the escalation
    messages = store.messages("s1")
    assert [m.status for m in messages if m.is_user] == [Status.ANSWERED, Status.ANSWERED, WAITING_FOR_HUMAN,
                                                         WAITING_FOR_HUMAN]
    assert len(awaiting_human(messages)) == 2
    # History's summary keeps the escalation apart from the last message's triage.
    summary = store.conversation("s1")
    assert summary["escalation_sentiment"] == case.sentiment and summary["escalation_priority"] == case.priority
    assert summary["escalation_reasons"] == case.reasons and summary["escalated_at"] > 0
    assert summary["sentiment"] != summary["escalation_sentiment"]
    [escalated] = events.of("conversation.escalated")
    assert escalated["conversation_id"] == "s1" and escalated["reasons"] == case.reasons
    assert len(events.of("message.created")) == 4 and len(events.of("reply.completed")) == 1


def test_the_queue_is_oldest_first(store):
    clock = [1000.0]
    queue = HandoffQueue(store, clock=lambda: clock[0])
    for name in ("late", "early"):
        clock[0] -= 100
        queue.escalate(name, brief="", reasons=["angry customer"], sentiment="negative", priority=7, message="x")
    assert [c.conversation for c in queue.open_cases()] == ["early", "late"]


def test_two_agents_cannot_both_claim(store):
    queue = HandoffQueue(store)
    queue.escalate("s2", brief="b", reasons=["legal threat"], sentiment="negative", priority=9, message="m")
    results: list[str] = []
    start = threading.Barrier(8)

    def claim(agent: str) -> None:
        start.wait()
        try:
            results.append(queue.claim("s2", agent).agent)
        except HandoffConflict:
            results.append("refused")

    threads = [threading.Thread(target=claim, args=(f"agent{n}",)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r != "refused"]
    assert len(winners) == 1 and results.count("refused") == 7
    case = queue.case("s2")
    assert case.status == CLAIMED and case.agent == winners[0]
    with pytest.raises(HandoffConflict, match=winners[0]):
        queue.reply("s2", "somebody else", "I'll take it")


def test_an_agent_answers_as_a_person_then_closes(desk, store):
    bot, queue, events = desk
    bot.ask("s3", ANGRY)
    bot.ask("s3", "still there?")
    with pytest.raises(HandoffConflict, match="Claim"):
        queue.reply("s3", "ana", "Hello")
    with pytest.raises(InputRejected, match="name"):
        queue.claim("s3", " ")
    queue.claim("s3", "ana")
    queue.reply("s3", "ana", "Hi, I'm Ana from support. Your card 4111 1111 1111 1111 is refunded.")
    messages = store.messages("s3")
    assert messages[-1].role == "agent" and messages[-1].meta.agent == "ana"
    assert messages[-1].status is Status.ANSWERED  # a person's reply waits for nobody
    assert "4111 1111 1111 1111" not in messages[-1].content  # redacted like every message
    assert awaiting_human(messages) == [] and queue.case("s3").waiting == 0
    assert events.of("message.created")[-1]["message"]["role"] == "agent"
    queue.close("s3", "ana")
    assert queue.open_cases() == [] and queue.case("s3").status == "closed"
    assert store.state("s3")["triage"]["state"] == "closed"
    after = bot.ask("s3", "One more question: how do refunds work?")
    assert after.text == "First answer [1]."  # the bot answers a new case


def test_hand_back_lets_the_bot_answer_again(desk, store):
    bot, queue, _ = desk
    bot.ask("s4", ANGRY)
    queue.claim("s4", "ben")
    queue.reply("s4", "ben", "I have issued your refund of 40 euros.")
    queue.hand_back("s4", "ben")
    assert queue.open_cases() == [] and queue.case("s4").status == "handed_back"
    reply = bot.ask("s4", "How long does a refund take?")
    assert reply.text == "First answer [1]." and not reply.meta.handed_off
    # The model is told what the person wrote.
    assert any("refund of 40 euros" in m["content"] for m in bot.backend.requests[-1].messages)


def test_a_store_fault_is_reported_as_store_unavailable():
    import redis

    from chatbot.store.conversations import ConversationStore
    from common.errors import StoreUnavailable
    from tests.redis_server import free_port

    nowhere = ConversationStore(redis.Redis(port=free_port(), socket_connect_timeout=0.5))
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        HandoffQueue(nowhere).open_cases()


def test_a_help_desk_releases_a_case_its_people_worked(desk):
    bot, queue, _ = desk
    bot.ask("s5", ANGRY)
    assert queue.release("s5", "handed_back", "Chatwoot")
    assert (queue.case("s5").status, queue.case("s5").agent) == ("handed_back", "Chatwoot")
    assert not queue.release("s5", "handed_back", "Chatwoot")  # nothing left to release
    assert bot.ask("s5", "How long does a refund take?").text == "First answer [1]."


def test_a_turn_that_ends_after_a_close_does_not_reopen_the_handoff(desk, store):
    bot, queue, _ = desk
    bot.ask("s6", ANGRY)
    queue.claim("s6", "ana")
    late = bot.send("s6", "hello? anyone?")  # read the conversation while it was with a person
    queue.close("s6", "ana")
    late.consume()  # stored after the close
    triage = store.state("s6")["triage"]
    assert triage["state"] == "closed" and not triage["escalated"]
    assert bot.ask("s6", "How long does a refund take?").text == "First answer [1]."


def test_a_handoff_on_request_opens_a_case_and_outlives_a_late_turn(desk, store):
    from chatbot.turn.manual_handoff import hand_off

    bot, queue, events = desk
    bot.ask("s7", "My camera is offline")
    late = bot.send("s7", "It still blinks red")  # a turn under way when the handoff is asked for
    result = hand_off(queue, "s7", "VIP customer", by="api:ops")
    late.consume()
    assert result["escalated"] and not result["already"]
    [case] = queue.open_cases()
    assert (case.conversation, case.status, case.reasons) == ("s7", "waiting", ["VIP customer"])
    assert store.state("s7")["triage"]["escalated"]  # the late turn merged onto the handoff, not over it
    assert events.of("conversation.escalated")[-1]["requested_by"] == "api:ops"
    assert hand_off(queue, "s7", "again", by="api:ops")["already"]
    queue.claim("s7", "ana")
    queue.reply("s7", "ana", "I am on it.")
    assert store.messages("s7")[-1].role == "agent"
