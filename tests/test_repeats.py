"""The repeated-sentence check and the stream guard, on replies the bundled SmolLM2-135M really wrote.

The looping replies below are verbatim outputs of the bundled model to the demo question "How do I
get a refund?" through the chat's prompt (max 200 new tokens, before the loop guards).
"""

from __future__ import annotations

import re

from backends.repeats import RepeatGuard, normalise, repeated_sentences, repeats, split_sentences

LOOP = (
    "To get a refund, you need to visit the website of the company that issued the refund.\n\n"
    "The website is called Nimbus Home, and it is a company that sells smart-home devices.\n\n"
    "The website is called Nimbus Home, and it is a company that sells smart-home devices.\n\n"
    "The company is called Nimbus Home, and it is a company that sells smart-home devices.\n\n"
    "The company is called Nimbus Home, and it is a company that sells smart-home devices.\n\n"
    "The company is called Nimbus Home, and it is a company that sells smart-"
)
FIRST_TWO = (
    "To get a refund, you need to visit the website of the company that issued the refund.\n\n"
    "The website is called Nimbus Home, and it is a company that sells smart-home devices.\n\n"
)
# A reply without a loop: numbered steps that share words, and citations.
STEPS = ("Open the Nimbus app and go to Account > Orders [1]. Tap the order, then tap Request a refund [1].\n"
         "1. Choose the reason.\n2. Choose the refund method.\nRefunds reach your card in 5 to 10 days [2].")


def stream(text: str, guard: RepeatGuard) -> str:
    """Feed `text` to the guard in token-sized pieces, as the local model's streamer hands it over."""
    shown = "".join(guard.feed(piece) for piece in re.findall(r"\s*\S+", text))
    return shown + guard.finish()


def test_the_models_loop_is_found_and_a_plain_answer_is_not():
    found = repeated_sentences(LOOP)
    assert found[0] == "The website is called Nimbus Home, and it is a company that sells smart-home devices."
    # "The company is called…" differs by one word from "The website is called…": a near-duplicate.
    assert "The company is called Nimbus Home, and it is a company that sells smart-home devices." in found
    assert repeated_sentences(STEPS) == []


def test_citations_and_punctuation_do_not_hide_a_repeat_and_short_fragments_never_count():
    assert normalise("Refunds take 5 to 10 days [1, 2].") == "refunds take 5 to 10 days"
    assert repeats("Refunds take 5 to 10 days [2]!", [normalise("Refunds take 5 to 10 days [1].")])
    assert not repeats("1.", [normalise("1.")])
    assert not repeats("Choose the refund method.", [normalise("Choose the reason.")])
    assert split_sentences("One. Two!\n- three\n") == ["One.", "Two!", "- three"]


def test_the_guard_stops_the_stream_before_the_first_repeated_sentence():
    guard = RepeatGuard()
    assert stream(LOOP, guard).strip() == FIRST_TWO.strip()
    assert guard.stopped
    assert guard.feed("More text after the stop.") == ""


def test_the_guard_passes_a_reply_without_a_loop_through_unchanged():
    guard = RepeatGuard()
    assert stream(STEPS, guard) == STEPS and not guard.stopped


def test_a_new_sentence_streams_as_it_comes_and_only_a_likely_repeat_is_held():
    guard = RepeatGuard()
    assert guard.feed("Refunds take five ") == ""  # three words: too early to tell
    assert guard.feed("to ten days. ") == "Refunds take five to ten days. "
    assert guard.feed("Open the ") == ""
    assert guard.feed("app now ") == "Open the app now "  # four words unlike any earlier opening: shown
    assert guard.feed("please. Refunds take five to ") == "please. "  # opens like sentence one: held
    assert guard.feed("ten days. ") == "" and guard.stopped
