"""Sliding window and rolling summary."""

from __future__ import annotations

from chatbot.turn.memory import ConversationMemory, extractive_summary


def test_overflowing_window_folds_oldest_turns_into_summary():
    memory = ConversationMemory(window_tokens=10_000, window_messages=4)
    for i in range(4):
        memory.add("user", f"Question {i}. More detail.")
        memory.add("assistant", f"Answer {i}.")
    calls = []

    def summarise(previous, folded):
        calls.append((previous, [m["content"] for m in folded]))
        return previous + "|" + ",".join(m["content"] for m in folded)

    assert memory.fold(summarise)
    assert len(memory.messages) == 4
    assert memory.messages[0]["content"] == "Question 2. More detail."
    assert calls[0][1] == ["Question 0. More detail.", "Answer 0.", "Question 1. More detail.", "Answer 1."]
    assert memory.summarised_count == 4
    assert not memory.fold(summarise)  # nothing more to fold


def test_token_budget_uses_the_given_tokenizer():
    memory = ConversationMemory(window_tokens=5, window_messages=100, count_tokens=lambda t: len(t.split()))
    memory.add("user", "one two three")
    memory.add("assistant", "four five six")
    memory.add("user", "seven")
    memory.add("assistant", "eight")
    folded = memory.overflow()
    assert [m["content"] for m in folded] == ["one two three", "four five six"]
    assert memory.tokens() <= 5


def test_extractive_summary_keeps_first_sentences_and_stays_short():
    folded = [
        {"role": "user", "content": "My camera is offline. I restarted it twice."},
        {"role": "assistant", "content": "Check the Wi-Fi band. It must be 2.4 GHz."},
    ]
    summary = extractive_summary("", folded)
    assert summary == "- Customer: My camera is offline.\n- Assistant: Check the Wi-Fi band."
    long = extractive_summary("", folded * 100)
    assert len(long) <= 1200 and long.endswith("Check the Wi-Fi band.")


def test_round_trip_through_a_dict():
    memory = ConversationMemory()
    memory.add("user", "hi")
    memory.summary, memory.summarised_count = "earlier", 2
    again = ConversationMemory()
    again.load(memory.to_dict())
    assert again.context() == ("earlier", [{"role": "user", "content": "hi"}])
    assert again.summarised_count == 2
