"""Secrets a customer types are replaced by visible markers before they are stored, searched,
exported, sent to a model or used for training."""

from __future__ import annotations

import pytest

from chatbot.store import analytics
from chatbot.turn.bot import Chatbot
from common.redaction import redact, redact_with_kinds
from chatbot.store.messages import Message
from tests.fakes import FakeBackend
from tests.test_bot import small_kb  # noqa: F401  (fixture)
from training.datasets import from_conversations


@pytest.mark.parametrize("typed, kept, marker", [
    ("card 4111 1111 1111 1111 was charged", "4111", "[card number]"),
    ("card 4111-1111-1111-1111", "1111-1111", "[card number]"),
    ("IBAN DE89 3704 0044 0532 0130 00 please", "3704", "[bank account]"),
    ("my ssn is 123-45-6789", "6789", "[national id]"),
    ("NI number AB 12 34 56 C", "34 56", "[national id]"),
    ("my password is hunter2", "hunter2", "password [redacted]"),
    ("PIN: 4821", "4821", "PIN [redacted]"),
    ("the code 493021 came by text", "493021", "code [redacted]"),
    ("I pasted sk-proj-abcdefghijklmnop1234 by mistake", "abcdefghij", "[access token]"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123 leaked", "ghp_", "[access token]"),
    ("Authorization: Bearer abcdefghijklmnopqrstuv", "abcdefghijklm", "[access token]"),
])
def test_each_kind_of_secret_is_replaced_by_its_marker(typed, kept, marker):
    assert kept not in redact(typed) and marker in redact(typed)


@pytest.mark.parametrize("separator", [
    "\u00a0",  # no-break space (French and Russian card forms, word processors)
    "\u202f",  # narrow no-break space (phones, French typography)
    "\u2007",  # figure space (digit-width space in typeset tables)
    "\u2009",  # thin space
    ".",  # 4111.1111.1111.1111
    "  ",  # several spaces
    "\t",
    "\u2013",  # en dash
    "\u2011",  # non-breaking hyphen
    "\uff0d",  # full-width hyphen-minus
])
def test_a_card_number_is_caught_whatever_separates_its_groups(separator):
    typed = f"my card is {separator.join(['4111', '1111', '1111', '1111'])}, please refund"
    redacted, kinds = redact_with_kinds(typed)
    assert kinds == ["card"] and "1111" not in redacted
    assert redacted == "my card is [card number], please refund"


def test_a_card_number_with_mixed_separators_or_full_width_digits_is_caught():
    for typed in ("4111 1111.1111-1111", "4111\u00a0 1111 \u202f1111..1111", "４１１１ １１１１ １１１１ １１１１",
                  "5500\u00a00000\u00a00000\u00a00004"):
        assert redact_with_kinds(f"card {typed} charged") == ("card [card number] charged", ["card"]), typed


@pytest.mark.parametrize("text", [
    "4111\u00a01111\u00a01111\u00a01112 fails the checksum",  # a number that is not a card stays
    "version 1.2.3.4.5.6.7.8.9.1.2.3.4 of the firmware",  # dots between single digits: no card checksum
    "orders 4111 1111\n1111 1111 on two lines",  # a line break ends a number
])
def test_numbers_with_other_separators_that_are_not_cards_stay_readable(text):
    assert redact_with_kinds(text) == (text, [])

@pytest.mark.parametrize("text", [
    "order 1234567890123 has not arrived",  # fails the card checksum: an order number
    "tracking 1Z999AA10123456784",
    "error code E42 on the thermostat",
    "call me on 555-123-4567",
    "IBAN DE00 3704 0044 0532 0130 00",  # fails the IBAN check
])
def test_numbers_an_agent_needs_stay_readable(text):
    assert redact_with_kinds(text) == (text, [])


def test_a_turn_stores_searches_sends_and_exports_only_the_markers(small_kb, store):  # noqa: F811
    backend = FakeBackend(["I have blocked that card [1]."])
    bot = Chatbot(knowledge=small_kb, backend=backend, store=store)
    reply = bot.ask("s", "Someone used my card 4111 1111 1111 1111 and my password is hunter2, refund me")
    assert reply.meta.redacted == ["card", "password"]
    stored = store.messages("s")[0].content
    assert stored == "Someone used my card [card number] and my password [redacted], refund me"
    sent = backend.requests[0]
    assert "4111" not in sent.messages[-1]["content"] and "hunter2" not in sent.system + sent.query
    assert store.search(text="4111") == [] and store.search(text="hunter2") == []
    conversation = store.load(["s"])[0]
    for export in (analytics.to_json(conversation), analytics.to_markdown(conversation)):
        assert "4111" not in export and "hunter2" not in export and "[card number]" in export


def test_conversations_stored_before_redaction_leave_the_app_without_secrets():
    raw = {"id": "old", "messages": [
        {"role": "user", "content": "card 4111 1111 1111 1111, password is hunter2"},
        {"role": "assistant", "content": "Blocked.", "approved": True},
    ]}
    examples = from_conversations([raw]).examples
    assert examples and examples[0]["prompt"][-1]["content"] == "card [card number], password [redacted]"
    read = {**raw, "messages": [Message.from_stored(m) for m in raw["messages"]]}
    assert "4111" not in analytics.to_json(read) and "hunter2" not in analytics.to_markdown(read)


def test_a_feedback_comment_is_stored_without_the_secret_an_agent_pasted(store):
    store.append("s", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello"}])
    store.set_feedback("s", 1, 0, "customer gave card 4111 1111 1111 1111, reply ignored it")
    comment = store.conversation("s")["messages"][1].feedback.comment
    assert "4111" not in comment and "[card number]" in comment and "reply ignored it" in comment


def test_history_search_never_finds_a_secret_stored_before_redaction_existed(store):
    # written straight to the store, as conversations stored by an older release were
    store.append("old", [{"role": "user", "content": "Refund to card 4111 1111 1111 1111 please"},
                         {"role": "assistant", "content": "Done"}])
    assert [s.id for s in store.search(text="refund to card")] == ["old"]
    assert store.search(text="4111 1111") == []
