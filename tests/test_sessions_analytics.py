"""Stats across stored conversations and exports of one, as pure functions over stored messages."""

from __future__ import annotations

import json
from datetime import datetime

from chatbot.store import analytics
from chatbot.store.messages import Feedback, Message
from chatbot.store.stats import conversation_stats

DAY = 86400.0
T0 = datetime(2025, 3, 3, 12, 0).timestamp()


def reply(ts, intent=None, latency=100.0, ttft=30.0, backend="openai", tokens=(200, 50), score=None,
          approved=False, **triage) -> Message:
    meta = {"backend": backend, "model": "m", "latency_ms": latency, "ttft_ms": ttft,
            "input_tokens": tokens[0], "output_tokens": tokens[1]}
    if intent:
        meta["route"] = {"intent": intent, "confidence": 0.8}
    if triage:
        meta["triage"] = triage
    message = {"ts": ts, "role": "assistant", "content": "answer", "meta": meta}
    if score is not None:
        message["feedback"] = {"score": score, "comment": "why" if score == 0 else "", "at": ts}
    if approved:
        message["approved"] = True
    return Message.from_stored(message)


def user(ts, error="") -> Message:
    return Message.from_stored({"ts": ts, "role": "user", "content": "question",
                                **({"meta": {"error": error}} if error else {})})


CONVERSATIONS = [
    {"id": "a", "created": T0, "messages": [
        user(T0), reply(T0, "refunds", latency=100, sentiment="negative", sentiment_score=-0.5, score=1,
                        approved=True),
        user(T0 + 60), reply(T0 + 60, "refunds", latency=300, sentiment="neutral", sentiment_score=0.1),
    ]},
    {"id": "b", "created": T0 + 2 * DAY, "messages": [
        user(T0 + 2 * DAY), reply(T0 + 2 * DAY, "talk_to_human", latency=200, backend="anthropic",
                                  sentiment="very_negative", sentiment_score=-0.9, escalate=True,
                                  reasons=["asked for a person", "repeated contact"], score=0),
    ]},
    {"id": "old", "created": T0 - 30 * DAY, "messages": [  # an older turn: no route, no triage, no ttft
        user(T0 - 30 * DAY, error="timeout"), user(T0 - 30 * DAY), reply(T0 - 30 * DAY, ttft=0, backend="offline"),
    ]},
]


def test_overview_counts_rates_and_trends():
    o = analytics.overview(CONVERSATIONS, since=T0 - DAY)
    assert (o["conversations"], o["turns"], o["failed_turns"]) == (2, 3, 0)
    assert o["volume"] == [
        {"day": "2025-03-03", "conversations": 1, "turns": 2},
        {"day": "2025-03-04", "conversations": 0, "turns": 0},
        {"day": "2025-03-05", "conversations": 1, "turns": 1},
    ]
    assert o["intents"] == [{"intent": "refunds", "turns": 2}, {"intent": "talk_to_human", "turns": 1}]
    assert o["escalation"]["escalated"] == 1 and o["escalation"]["rate"] == 0.5
    assert o["escalation"]["reasons"] == [{"reason": "asked for a person", "count": 1},
                                          {"reason": "repeated contact", "count": 1}]
    assert o["sentiment"] == {"unit": "day", "rows": [{"when": "2025-03-03", "mean_score": -0.2, "turns": 2},
                                                      {"when": "2025-03-05", "mean_score": -0.9, "turns": 1}]}
    assert o["feedback"] == {"up": 1, "down": 1, "rated": 2, "score": 0.5, "comments": 1, "approved": 1}
    reply_row = o["latency"][0]
    assert (reply_row["measure"], reply_row["n"], reply_row["p50"], reply_row["p95"]) == ("reply", 3, 200, 300)
    assert o["tokens"] == [{"backend": "openai", "turns": 2, "input_tokens": 400, "output_tokens": 100},
                           {"backend": "anthropic", "turns": 1, "input_tokens": 200, "output_tokens": 50}]


def test_sentiment_within_one_day_is_bucketed_by_hour():
    one_day = [c for c in CONVERSATIONS if c["id"] == "a"]
    late = {"id": "late", "created": T0 + 3 * 3600, "messages": [
        user(T0 + 3 * 3600), reply(T0 + 3 * 3600, "refunds", sentiment="positive", sentiment_score=0.7)]}
    trend = analytics.overview([*one_day, late])["sentiment"]
    hour = datetime.fromtimestamp(T0).hour
    assert trend["unit"] == "hour"
    assert [(row["when"][-5:], row["turns"]) for row in trend["rows"]] == [(f"{hour:02d}:00", 2),
                                                                           (f"{hour + 3:02d}:00", 1)]
    assert analytics.overview(one_day)["sentiment"]["rows"][0]["mean_score"] == -0.2
    assert analytics.overview([])["sentiment"] == {"unit": "day", "rows": []}


def test_a_turn_is_a_customer_message_and_what_answered_it():
    handed_off = [
        user(T0), reply(T0, "refunds"),  # a model's reply
        user(T0 + 60), Message.from_stored({
            "ts": T0 + 60, "role": "assistant", "content": "A colleague will take over.",
            "meta": {"backend": analytics.HANDOFF, "triage": {"escalate": True}}}),  # the handoff notice
        Message.from_stored({"ts": T0 + 120, "role": "user", "content": "hello??",
                             "meta": {"backend": analytics.HANDOFF}}),  # a person's
        user(T0 + 180, error="timeout"),  # no reply: the backend failed
    ]
    assert analytics.count_turns(handed_off) == (3, 1)
    sidebar = conversation_stats(handed_off)  # the chat page's sidebar
    assert (sidebar["turns"], sidebar["failed_turns"]) == (3, 1)
    _, counters, _ = analytics.summary_fields([m.to_stored() for m in handed_off])
    assert (counters["turns"], counters["failed"]) == (3, 1)
    o = analytics.overview([{"id": "h", "created": T0, "messages": handed_off}])
    assert (o["turns"], o["failed_turns"]) == (3, 1)


def test_older_turns_without_routing_or_triage_are_counted_gracefully():
    o = analytics.overview(CONVERSATIONS)
    assert (o["conversations"], o["turns"], o["failed_turns"]) == (3, 4, 1)
    assert {"intent": "(not routed)", "turns": 2} in o["intents"]  # the reply and the failed turn
    assert o["latency"][1]["n"] == 3  # a reply without a first-token time is left out of that measure
    assert len(o["volume"]) == 33  # every day from the oldest turn to the newest


def test_handed_off_turns_count_but_have_no_latency_or_tokens():
    handed = {"id": "h", "created": T0, "messages": [
        user(T0), reply(T0, "complaint", latency=2.0, ttft=1.0, backend="handoff", tokens=(0, 0), escalate=True,
                        reasons=["angry"], sentiment="very_negative", sentiment_score=-0.9),
        # After the handoff the assistant stays silent: the customer message carries the turn.
        Message.from_stored({"ts": T0 + 60, "role": "user", "content": "hello??", "meta": {
            "backend": "handoff", "route": {"intent": "complaint"},
            "triage": {"escalate": True, "reasons": ["angry"], "sentiment": "negative", "sentiment_score": -0.5}}}),
    ]}
    o = analytics.overview([CONVERSATIONS[0], handed])
    assert (o["conversations"], o["turns"], o["failed_turns"]) == (2, 4, 0)
    assert {row["intent"]: row["turns"] for row in o["intents"]} == {"refunds": 2, "complaint": 2}
    assert o["escalation"]["rate"] == 0.5 and o["escalation"]["reasons"] == [{"reason": "angry", "count": 2}]
    assert o["latency"][0]["n"] == 2 and o["latency"][0]["p50"] == 100  # the model's replies only
    assert [row["backend"] for row in o["tokens"]] == ["openai"]
    sets, incr, _ = analytics.summary_fields([m.to_stored() for m in handed["messages"][2:]])
    assert incr == {"messages": 1, "turns": 1, "intent:complaint": 1} and sets["escalated"] == "1"
    assert "backend" not in sets
    markdown = analytics.to_markdown({"id": "h", **handed})
    assert "> With a person: the assistant drafted no reply." in markdown


def test_overview_of_nothing():
    o = analytics.overview([])
    assert o["conversations"] == 0 and o["volume"] == [] and o["escalation"]["rate"] is None
    assert o["feedback"]["score"] is None and o["latency"][0]["p95"] is None


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert analytics.percentile(values, 50) == 50 and analytics.percentile(values, 95) == 95
    assert analytics.percentile([7.0], 99) == 7.0 and analytics.percentile([], 50) is None


def test_summary_fields_of_a_turn():
    sets, incr, title = analytics.summary_fields([
        {"role": "user", "content": "x" * 200},
        {"role": "assistant", "content": "a", "meta": {
            "backend": "openai", "model": "gpt", "route": {"intent": "billing"},
            "triage": {"sentiment": "negative", "priority": 7, "escalate": True, "reasons": ["angry"],
                       "state": "escalated"}}},
    ])
    assert title == "x" * analytics.TITLE_CHARS
    assert incr == {"messages": 2, "turns": 1, "intent:billing": 1}
    assert sets == {"backend": "openai", "model": "gpt", "last_intent": "billing", "sentiment": "negative",
                    "priority": "7", "triage_state": "escalated", "escalated": "1",
                    "escalation_reasons": '["angry"]', "escalation_sentiment": "negative",
                    "escalation_priority": "7", "escalated_at": "0.0"}
    # A later message of an escalated conversation changes the last triage, never the escalation's.
    later, _, _ = analytics.summary_fields([{"role": "user", "content": "ok thanks", "meta": {"triage": {
        "sentiment": "positive", "priority": 2, "escalate": True, "newly_escalated": False, "reasons": []}}}])
    assert later["sentiment"] == "positive" and later["escalated"] == "1"
    assert not {"escalation_reasons", "escalation_sentiment", "escalation_priority"} & set(later)
    _, incr, _ = analytics.summary_fields([{"role": "user", "content": "q", "meta": {"error": "boom"}}])
    assert incr == {"messages": 1, "failed": 1}


def test_merge_feedback_attaches_to_the_right_replies():
    messages = [Message(role=role, content="") for role in ("user", "assistant", "user", "assistant")]
    merged = analytics.merge_feedback(messages, {b"1:score": b"0", b"1:comment": b"wrong", b"1:at": b"5.5",
                                                 b"3:approved": b"7.0", b"9:score": b"1"})
    assert merged[1].feedback == Feedback(score=0, comment="wrong", at=5.5)
    assert merged[3].approved is True and merged[3].approved_at == 7.0 and merged[3].feedback is None


def test_markdown_and_json_exports():
    conversation = {"id": "a", "created": T0, "updated": T0 + 60, "turns": 2, "agents": ["ana"],
                    "escalated": True, "escalation_reasons": ["asked for a person"],
                    "state": {"memory": {"summary": "- Customer: wants a refund."}},
                    "messages": [user(T0, error="The model server answered 500."), CONVERSATIONS[0]["messages"][1]]}
    meta = conversation["messages"][1].meta
    meta.citations, meta.retrieved = [1], [{"title": "Refund policy", "source": "refunds.md"}]
    meta.prompt_name, meta.prompt_version = "billing", 3
    markdown = analytics.to_markdown(conversation)
    assert markdown.startswith("# Conversation a\n")
    for expected in ("- Agents: ana", "- Escalated: asked for a person", "## Summary of older messages",
                     "- Customer: wants a refund.", "### Customer · 2025-03-03 12:00:00",
                     "> No reply: The model server answered 500.", "- [1] Refund policy (refunds.md)",
                     "intent refunds (0.80)", "sentiment negative", "prompt billing v3",
                     "Feedback: thumbs up · approved for training"):
        assert expected in markdown, expected
    exported = json.loads(analytics.to_json(conversation))
    assert exported == {**conversation, "messages": [m.to_stored() for m in conversation["messages"]]}
    assert [Message.from_stored(m) for m in exported["messages"]] == conversation["messages"]
