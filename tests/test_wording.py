"""Counts agree with their nouns wherever the pages print one ("1 chunk", never "1 chunks" or "turn(s)")."""

from __future__ import annotations

from chatbot.store.messages import TurnMeta
from common.wording import plural
from ui.chat_view import _count, _ms, reply_caption


def test_plural_agrees_with_the_count_and_groups_thousands():
    assert plural(1, "chunk") == "1 chunk"
    assert plural(0, "chunk") == "0 chunks"
    assert plural(1250, "chunk") == "1,250 chunks"
    assert plural(2, "reply") == "2 replies" and plural(1, "reply") == "1 reply"
    assert plural(3, "person", "people") == "3 people"
    assert plural(2.0, "turn") == "2 turns" and plural(1.5, "day") == "1.5 days"


def test_a_reply_caption_with_one_token_says_token():
    caption = reply_caption(TurnMeta(backend="local", model="smollm2", latency_ms=900, input_tokens=1200,
                                     output_tokens=1))
    assert caption.endswith("1,200 → 1 token")


def test_sidebar_numbers_stay_six_characters_or_less():
    assert [_ms(v) for v in (None, 84, 999.4, 999.6, 2345, 41_234, 312_000)] == \
        ["–", "84 ms", "999 ms", "1.00 s", "2.35 s", "41.2 s", "312 s"]
    assert [_count(v) for v in (7, 1057, 9999, 12_345, 999_949, 1_234_567)] == \
        ["7", "1,057", "9,999", "12.3k", "999.9k", "1.2M"]
    assert all(len(_ms(v)) <= 6 for v in range(0, 999_000, 997))
