"""Sentiment, trend, priority, every escalation trigger, the handoff and the conversation state machine."""

from __future__ import annotations

import json

import pytest

from chatbot.routing.routes import RouteChoice
from chatbot.triage.sentiment import Sentiment, analyse_sentiment, sentiment_trend
from chatbot.triage.triage import HANDOFF_NOTICE, Triage, TriageState, handoff_summary


def choice(intent: str, *, abstained: bool = False, escalate: bool = False) -> RouteChoice:
    return RouteChoice(
        intent="unknown" if abstained else intent,
        confidence=0.3 if abstained else 0.9,
        scores=[(intent, 0.3 if abstained else 0.9)],
        abstained=abstained,
        template="escalation" if escalate else "general",
        escalate=escalate,
    )


@pytest.mark.parametrize(
    "text, level",
    [
        ("This is absolutely ridiculous!!! Your service is a disgrace", "very_negative"),
        ("my doorbell is not working", "negative"),
        ("Where is my order?", "neutral"),
        ("ok thanks", "positive"),
        ("Perfect, it works now, thank you so much!", "very_positive"),
    ],
)
def test_sentiment_levels_span_very_negative_to_very_positive(text, level):
    assert analyse_sentiment(text).level == level


def test_sentiment_reads_negation_intensity_and_contrast():
    assert analyse_sentiment("I am not happy").score < 0 < analyse_sentiment("I am happy").score
    assert analyse_sentiment("very disappointed").score < analyse_sentiment("disappointed").score
    assert analyse_sentiment("The app is good but the camera is awful").score < 0
    assert analyse_sentiment("no problem").score > 0


def test_trend_over_the_conversation():
    assert sentiment_trend([0.2, -0.1, -0.4, -0.7]) == "deteriorating"
    assert sentiment_trend([-0.6, -0.2, 0.1, 0.5]) == "improving"
    assert sentiment_trend([0.0, 0.05, -0.05, 0.0]) == "stable"
    assert sentiment_trend([-0.9]) == "stable"


def test_priority_combines_sentiment_intent_repeat_contact_and_tier():
    triage = Triage()
    calm, angry = Sentiment("neutral", 0.0), Sentiment("very_negative", -0.8)
    base = triage.priority(calm, "greeting_thanks", contact_count=1, tier="standard")
    assert base == 1
    assert triage.priority(calm, "billing", 1, "standard") == 2
    assert triage.priority(angry, "billing", 1, "standard") == 5
    assert triage.priority(angry, "billing", 3, "standard") == 7
    assert triage.priority(angry, "billing", 3, "vip") == 9
    assert triage.priority(angry, "complaint", 9, "vip", failed_answers=5) == 10  # capped


def test_a_calm_question_is_not_escalated():
    state = TriageState()
    result = Triage().assess("How do I reset my password?", choice("account_access"), state)
    assert not result.escalate and result.reasons == []
    assert result.state == "resolving" and 1 <= result.priority <= 10


@pytest.mark.parametrize(
    "text, intent, reason",
    [
        ("Can I speak to a real person please?", "other", "human requested"),
        ("I will be contacting my lawyer about this", "billing", "legal threat"),
        ("Someone hacked my account and bought a camera", "account_access", "security or fraud report"),
        ("There's a payment on my card that wasn't me", "billing", "security or fraud report"),
        ("This is absolutely ridiculous!!! Worst service ever", "complaint", "angry customer"),
    ],
)
def test_each_message_trigger_escalates(text, intent, reason):
    state = TriageState()
    result = Triage().assess(text, choice(intent), state)
    assert result.escalate and result.newly_escalated
    assert reason in result.reasons
    assert state.state == "escalated" and reason in state.escalation_reason


def test_routed_talk_to_human_escalates():
    result = Triage().assess("agent", choice("talk_to_human", escalate=True), TriageState())
    assert result.escalate and "human requested" in result.reasons


def test_high_priority_escalates():
    # A Nimbus Plus business customer on their third contact, unhappy about billing.
    state = TriageState(contact_count=3)
    result = Triage(escalate_priority=8).assess(
        "I'm disappointed, the invoice is wrong", choice("billing"), state, customer_tier="business"
    )
    assert result.priority >= 8 and result.escalate
    assert any(r.startswith("priority") for r in result.reasons)
    assert "angry customer" not in result.reasons


def test_repeated_contact_is_read_from_the_message():
    state = TriageState()
    Triage().assess("This is the third time I'm asking about my delivery", choice("shipping_orders"), state)
    assert state.contact_count == 3


def test_deteriorating_trend_escalates():
    triage, state = Triage(), TriageState()
    steps = ["Thanks, the app looks great", "The camera shows offline", "Hmm, it is still not working"]
    results = [triage.assess(text, choice("technical_problem"), state) for text in steps]
    # Falling, but one unhappy message after calm ones is not yet a reason to hand off.
    assert results[-1].trend == "deteriorating" and not any(r.escalate for r in results)
    result = triage.assess("This is getting really annoying", choice("technical_problem"), state)
    scores = [r.sentiment.score for r in results + [result]]
    assert scores == sorted(scores, reverse=True) and scores[-1] > -0.7  # falling, but not anger
    assert result.escalate and result.reasons == ["sentiment deteriorating"]


def test_repeated_failed_answers_escalate():
    triage, state = Triage(failed_answers_limit=2), TriageState()
    triage.assess("My camera is offline", choice("technical_problem"), state)
    first = triage.assess("That didn't help", choice("technical_problem", abstained=True), state)
    assert first.failed_answer and not first.escalate and state.failed_answers == 1
    second = triage.assess("I already tried that", choice("technical_problem", abstained=True), state)
    assert second.failed_answer and second.escalate
    assert "2 answers did not help" in second.reasons


def test_recorded_failed_answers_count_toward_escalation():
    triage, state = Triage(failed_answers_limit=2), TriageState()
    triage.assess("How do I pair the plug?", choice("technical_problem"), state)
    triage.record_failed_answer(state)
    triage.record_failed_answer(state)
    result = triage.assess("ok what next", choice("technical_problem"), state)
    assert result.escalate and "2 answers did not help" in result.reasons


def test_failed_answer_phrases_before_any_answer_do_not_count():
    state = TriageState()
    result = Triage().assess("That didn't help", choice("technical_problem"), state)
    assert not result.failed_answer and state.failed_answers == 0


def test_handoff_state_says_so_once_and_keeps_the_reason():
    triage, state = Triage(), TriageState()
    triage.assess("Where is my parcel?", choice("shipping_orders"), state)
    escalated = triage.assess("I want to talk to a human", choice("talk_to_human", escalate=True), state)
    assert escalated.newly_escalated
    assert triage.announce_handoff(state) == HANDOFF_NOTICE
    assert triage.announce_handoff(state) is None  # said once
    later = triage.assess("Thanks, bye", choice("greeting_thanks"), state)
    assert later.escalate and not later.newly_escalated and later.state == "escalated"
    assert state.escalation_reason == "human requested"


def test_handoff_summary_briefs_the_person_taking_over():
    triage, state = Triage(), TriageState(customer_tier="plus")
    messages = []
    for text, intent in [("My doorbell battery dies in a day", "technical_problem"),
                         ("I'll take you to small claims court if this isn't fixed", "complaint")]:
        messages += [{"role": "user", "content": text}, {"role": "assistant", "content": "Let me help."}]
        triage.assess(text, choice(intent), state, customer_tier="plus")
    state.handoff_summary = handoff_summary(state, messages)
    summary = state.handoff_summary
    assert "legal threat" in summary
    assert "technical_problem" in summary and "complaint" in summary
    assert "First message: My doorbell battery dies in a day" in summary
    assert "When escalated: I'll take you to small claims court" in summary
    assert "plus tier" in summary
    assert len(summary.splitlines()) <= 10


def test_handoff_summary_names_the_problem_not_the_greeting():
    triage, state = Triage(), TriageState()
    messages = []
    for text, intent in [("Hi there", "greeting_thanks"), ("My thermostat shows no power", "technical_problem"),
                         ("Get me a manager", "talk_to_human"), ("hello?", "greeting_thanks")]:
        messages.append({"role": "user", "content": text})
        triage.assess(text, choice(intent, escalate=intent == "talk_to_human"), state)
    summary = handoff_summary(state, messages)
    assert "First message: My thermostat shows no power" in summary and "Hi there" not in summary
    assert "When escalated: Get me a manager" in summary and "Latest message: hello?" in summary


def test_state_machine_walks_a_whole_conversation():
    triage, state = Triage(), TriageState()
    steps = [
        ("Hello", choice("greeting_thanks"), "greeting"),
        ("something about my thing", choice("other", abstained=True), "understanding"),
        ("My thermostat shows no power", choice("technical_problem"), "resolving"),
        ("Great, that worked, thanks", choice("greeting_thanks"), "closing"),
        ("Bye", choice("greeting_thanks"), "closed"),
        ("Actually, where is my invoice?", choice("billing"), "resolving"),
    ]
    for text, routed, expected in steps:
        assert triage.assess(text, routed, state).state == expected, text


def test_state_machine_refuses_transitions_it_does_not_allow():
    state = TriageState(state="escalated", escalated=True)
    with pytest.raises(ValueError):
        state.move_to("resolving")
    with pytest.raises(ValueError):
        TriageState(state="greeting").move_to("closed")


def test_closing_a_handed_off_case_gives_the_next_message_back_to_the_bot():
    triage, state = Triage(), TriageState()
    triage.assess("Get me a supervisor", choice("talk_to_human", escalate=True), state)
    state.handoff_summary = handoff_summary(state, [{"role": "user", "content": "Get me a supervisor"}])
    triage.close(state)
    assert state.state == "closed" and not state.escalated
    assert state.escalation_reason == "human requested" and state.handoff_summary  # kept on record
    result = triage.assess("How do I add a second camera?", choice("technical_problem"), state)
    assert not result.escalate and result.state == "resolving"


def test_state_round_trips_through_a_json_dict():
    triage, state = Triage(), TriageState()
    triage.assess("My camera is offline", choice("technical_problem"), state)
    triage.assess("Let me talk to your manager", choice("talk_to_human", escalate=True), state)
    stored = json.loads(json.dumps(state.to_dict()))
    restored = TriageState.from_dict(stored)
    assert restored == state
    assert restored.state == "escalated" and restored.escalated
    assert TriageState.from_dict({"state": "nonsense", "extra": 1}).state == "greeting"


def test_handoff_summary_leaves_out_card_numbers_and_codes():
    state = TriageState(escalated=True, escalation_reason="security or fraud report")
    messages = [{"role": "user", "content": "Someone used card 4111 1111 1111 1111, my password is hunter2"},
                {"role": "user", "content": "The code 493021 came by text and error code E42 shows"}]
    summary = handoff_summary(state, messages)
    assert "4111" not in summary and "hunter2" not in summary and "493021" not in summary
    assert "[card number]" in summary and "E42" in summary


def test_result_is_stored_as_a_flat_dict():
    result = Triage().assess("I'm fed up, where is my refund?", choice("refunds"), TriageState())
    stored = json.loads(json.dumps(result.to_dict()))
    assert stored["sentiment"] == result.sentiment.level == "negative"
    assert stored["sentiment_score"] == pytest.approx(result.sentiment.score, abs=1e-3)
    assert {"trend", "priority", "escalate", "reasons", "state"} <= set(stored)
