"""Citation markers in every form models write them, recorded in order and listed under the reply."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from chatbot.turn.bot import cited_numbers


@pytest.mark.parametrize("reply,expected", [
    ("Refunded to the card [1, 2]. Send both invoices [3].", [1, 2, 3]),
    ("See [1,3].", [1, 3]),
    ("See [1][2].", [1, 2]),
    ("See [1], [2].", [1, 2]),
    ("See [1-3].", [1, 2, 3]),
    ("See [1\u20133].", [1, 2, 3]),  # en dash
    ("See [1 \u2014 3].", [1, 2, 3]),  # em dash, spaced
    ("See [2; 4].", [2, 4]),
    ("See [1, 2, and 4] and [3 and 5].", [1, 2, 4, 3, 5]),
    ("See [1, 3-5].", [1, 3, 4, 5]),
    ("See [ 2 ].", [2]),
    # Order of first use, each number once.
    ("First [3], then [1, 3], then [2-3].", [3, 1, 2]),
])
def test_every_marker_form_is_read_in_order_of_first_use(reply, expected):
    assert cited_numbers(reply, 5) == expected


@pytest.mark.parametrize("reply,expected", [
    ("See [2, 9] and [0].", [2]),
    ("See [4-9].", [4, 5]),  # the part of a range past the last passage is ignored
    ("See [3-1].", [1, 2, 3]),  # written backwards, still the same passages
])
def test_out_of_range_numbers_are_ignored(reply, expected):
    assert cited_numbers(reply, 5) == expected


@pytest.mark.parametrize("text", [
    "Refunds take [5-10 days].", "Released in [2024-2025].", "Version [1.5].", "At [10:30].",
    "Array [1,,2] and [1,].", "A link [docs](https://example.com).",
])
def test_brackets_that_are_not_markers_cite_nothing(text):
    assert cited_numbers(text, 20) == []


def _render(content: str, citations: list[int]):
    from ui.chat_view import render_message

    retrieved = [{"title": f"Article {n}", "heading": "", "source": f"doc{n}.md", "chunk": 0, "score": 0.5,
                  "text": f"Passage text {n}."} for n in range(1, 5)]
    from chatbot.store.messages import Message

    render_message(Message.from_stored({"role": "assistant", "content": content,
                                        "meta": {"backend": "fake", "retrieved": retrieved, "citations": citations}}))


def sources_of(content: str, citations: list[int]) -> tuple[str, list[str]]:
    at = AppTest.from_function(_render, args=(content, citations)).run()
    assert not at.exception
    expander = at.expander[0]
    return expander.label, [m.value.split("**")[1] for m in expander.markdown]


def test_the_sources_under_a_reply_list_grouped_and_ranged_markers():
    label, items = sources_of("Refunded to the card [1, 2]. Send both invoices [4].", [1, 2, 4])
    assert label == "Sources (3 cited)"
    assert items == ["[1] Article 1", "[2] Article 2", "[4] Article 4"]
    label, items = sources_of("See [2\u20134].", [2, 3, 4])
    assert items == ["[2] Article 2", "[3] Article 3", "[4] Article 4"]


def test_a_reply_stored_with_grouped_markers_unrecorded_still_lists_them():
    # Stored before grouped markers were recognised: only [3] was recorded.
    label, items = sources_of("Refunded to the card [1, 2]. Send both invoices [3].", [3])
    assert label == "Sources (3 cited)"
    assert items == ["[1] Article 1", "[2] Article 2", "[3] Article 3"]


def test_a_reply_citing_nothing_lists_what_was_retrieved():
    label, items = sources_of("No marker here.", [9])
    assert label == "Sources (4 retrieved, none cited)" and len(items) == 4
