"""The customer never sees the model's <thinking> reasoning, however the stream is cut."""

from __future__ import annotations

import random

import pytest

from chatbot.turn.reasoning import ReasoningFilter, strip_reasoning

REPLY = (
    "<thinking>The customer has a Nimbus Cam offline. Passage 1 covers Wi-Fi; passage 2 the reset. "
    "Start with power.</thinking>\n\nLet's get it back online [1]:\n1. Check the light.\n2. Restart it [2]."
)
ANSWER = "Let's get it back online [1]:\n1. Check the light.\n2. Restart it [2]."


def stream(pieces):
    f = ReasoningFilter()
    shown = [f.feed(p) for p in pieces]
    shown.append(f.flush())
    return f, shown


def test_whole_reply_is_stripped():
    assert strip_reasoning(REPLY) == ANSWER


@pytest.mark.parametrize("cut", ["<", "<thin", "<thinking", "</", "</think", "</thinking"])
def test_tags_split_across_pieces_are_held_back(cut):
    at = REPLY.index(cut) if not cut.startswith("</") else REPLY.index("</thinking>")
    pieces = [REPLY[:at + len(cut)], REPLY[at + len(cut):]]
    f, shown = stream(pieces)
    assert "".join(shown) == ANSWER
    assert not any("thinking" in s or "Passage 1" in s for s in shown)
    assert "Passage 1 covers Wi-Fi" in f.reasoning


def test_one_character_at_a_time():
    f, shown = stream(list(REPLY))
    assert "".join(shown) == ANSWER
    assert f.reasoning.startswith("The customer has") and f.blocks == 1


def test_random_cuts_never_leak_reasoning():
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(REPLY)), rng.randint(1, 12)))
        pieces = [REPLY[a:b] for a, b in zip([0, *cuts], [*cuts, len(REPLY)])]
        f, shown = stream(pieces)
        assert "".join(shown) == ANSWER, pieces


def test_text_that_only_looks_like_a_tag_is_released():
    f, shown = stream(["Press <", "b> or type 2 < 3, then <th", "ink about it"])
    assert "".join(shown) == "Press <b> or type 2 < 3, then <think about it"
    # A lone "<" is held only until the next piece proves it is not a tag.
    assert shown[0] == "Press "


def test_partial_tag_at_the_very_end_is_flushed():
    f, shown = stream(["Use the app <thin"])
    assert shown == ["Use the app ", "<thin"]


def test_unclosed_reasoning_stays_hidden():
    f, shown = stream(["Sure. <thinking>step one, step two", " and the secret plan"])
    assert "".join(shown) == "Sure. "
    assert f.unclosed and "secret plan" in f.reasoning


def test_several_blocks_upper_case_and_a_stray_closing_tag():
    text = "<THINKING>a</THINKING>One. <thinking>b</thinking> Two.</thinking> Three."
    f, shown = stream([text[i:i + 5] for i in range(0, len(text), 5)])
    assert "".join(shown) == "One. Two. Three."
    assert f.reasoning == "ab" and f.blocks == 2


def test_reply_without_reasoning_passes_through_piece_by_piece():
    pieces = ["You can ", "ask for a refund ", "within 30 days [1]."]
    f, shown = stream(pieces)
    assert shown[:3] == pieces and shown[3] == ""
