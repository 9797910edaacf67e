"""Replies that are not plain answers, through whole turns of the Chatbot on each provider's real
client and local protocol server: a blank or empty reply is not stored as an answer nor sent back
to the model, a reply cut off at the token limit is stored marked as such, a refusal is stored as
a refusal and kept out of what the model sees, and the next turn of the conversation succeeds."""

from __future__ import annotations

import pytest

from backends.anthropic_backend import AnthropicBackend
from chatbot.turn.bot import Chatbot
from chatbot.store.outcomes import CUT_OFF, CUT_OFF_MARK, EMPTY, REFUSAL, outcome_notice
from common.types import Stop
from devtools.servers.anthropic import AnthropicServer
from tests.providers import KEY, PROVIDERS

ANSWER = "Sorry about that: a duplicate charge is refunded automatically within 5 days."


@pytest.fixture
def store(module_redis):
    """The module's conversation store, emptied for each test."""
    from chatbot.store.conversations import ConversationStore

    module_redis.flushdb()
    return ConversationStore(module_redis, ttl_seconds=3600)


@pytest.fixture
def conversation(module_kb, store):
    """A Chatbot on a provider's server scripted with a first reply; then every reply is ANSWER."""
    servers = []

    def start(provider: str, first_reply, finish: str = "end"):
        server_class, make = PROVIDERS[provider]
        server = server_class(first_reply, finish=finish).start()
        servers.append(server)
        return server, Chatbot(knowledge=module_kb, backend=make(server), store=store)

    yield start
    for server in servers:
        server.stop()


def answer_next(server) -> None:
    server.pieces, server.finish = [ANSWER], "end"


def sent_texts(server) -> list[str]:
    """The conversation's texts in the last request the server received."""
    return [m["content"] for m in server.last.body["messages"] if m["role"] != "system"]


def test_a_whitespace_reply_from_anthropic_does_not_break_the_conversation(conversation, store):
    # The API refuses any request holding a blank text message; the conversation must go on.
    server, bot = conversation("anthropic", ["\n", "\n"])
    first = bot.ask("c1", "Hi, I was charged twice for my order this month.")
    assert first.meta.outcome == EMPTY
    assert [m.role for m in store.messages("c1")] == ["user"]
    answer_next(server)
    for text in ("Can you check it?", "Hello?"):
        assert bot.ask("c1", text).text == ANSWER
    assert all(t.strip() for t in sent_texts(server))
    assert "Hi, I was charged twice for my order this month." in sent_texts(server)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("reply", ["  \n\n ", ""], ids=["blank", "empty"])
def test_a_blank_or_empty_reply_is_no_answer_and_the_next_turn_works(conversation, store, provider, reply):
    server, bot = conversation(provider, reply)
    first = bot.ask("c1", "Where is my parcel?")

    assert first.meta.outcome == EMPTY and not first.meta.error
    stored = store.messages("c1")
    assert [m.role for m in stored] == ["user"]
    assert stored[0].content == "Where is my parcel?"
    assert outcome_notice(stored[0].meta) == "No answer: the model returned an empty reply — send it again."
    answer_next(server)
    assert bot.ask("c1", "Where is my parcel? Order 1234.").text == ANSWER
    assert sent_texts(server) == ["Where is my parcel?", "Where is my parcel? Order 1234."]
    assert [m.role for m in store.messages("c1")] == ["user", "user", "assistant"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_reply_cut_off_at_the_token_limit_is_kept_and_marked(conversation, store, provider):
    server, bot = conversation(provider, "Refunds reach your card within 5 working days once the", finish="length")
    first = bot.ask("c1", "How long does a refund take?")

    assert first.meta.stop_reason == Stop.LENGTH and first.meta.outcome == CUT_OFF
    reply = store.messages("c1")[-1]
    assert reply.role == "assistant"
    assert reply.content == "Refunds reach your card within 5 working days once the"
    assert "the reply was cut off at the token limit" in outcome_notice(reply.meta).lower()
    answer_next(server)
    assert bot.ask("c1", "Once the what?").text == ANSWER
    # The model sees its earlier reply marked as incomplete, not as a whole answer.
    assert sent_texts(server)[1] == f"Refunds reach your card within 5 working days once the {CUT_OFF_MARK}"


@pytest.mark.parametrize("provider,finish", [("openai", "refusal"), ("openai", "content_filter"),
                                             ("anthropic", "refusal")])
def test_a_refusal_is_shown_as_one_and_kept_out_of_the_model_history(conversation, store, provider, finish):
    server, bot = conversation(provider, "I can't help with that request.", finish=finish)
    first = bot.ask("c1", "Tell me another customer's address.")

    assert first.meta.stop_reason == Stop.REFUSAL and first.meta.outcome == REFUSAL
    stored = store.messages("c1")
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[0].content == "Tell me another customer's address."
    assert stored[1].content == "I can't help with that request."
    assert outcome_notice(stored[1].meta).startswith("Refused:")
    answer_next(server)
    assert bot.ask("c1", "Then where is my own parcel?").text == ANSWER
    assert sent_texts(server) == ["Then where is my own parcel?"]


def test_a_refusal_without_words_is_stored_as_a_refusal(conversation, store):
    server, bot = conversation("anthropic", "", finish="refusal")
    assert bot.ask("c1", "Something the model will not answer.").meta.outcome == REFUSAL
    assert store.messages("c1")[-1].content == "The model declined to answer this message."


def test_a_blank_reply_at_the_token_limit_says_the_limit_was_reached(conversation, store):
    server, bot = conversation("openai", "\n", finish="length")
    assert bot.ask("c1", "Explain everything about refunds.").meta.outcome == EMPTY
    assert "token limit before writing any text" in outcome_notice(store.messages("c1")[0].meta)


def test_the_local_model_reaching_max_new_tokens_is_cut_off(module_kb, store, tmp_path):
    pytest.importorskip("transformers")
    from backends.local import LocalBackend
    from training.tiny_model import make_tiny_model

    # A random model: it writes until the token limit, never reaching its end-of-turn token.
    backend = LocalBackend(str(make_tiny_model(tmp_path / "model")))
    bot = Chatbot(knowledge=module_kb, backend=backend, store=store, max_tokens=6)
    reply = bot.ask("c1", "My camera is offline")

    assert reply.meta.stop_reason == Stop.LENGTH
    assert reply.meta.outcome == (CUT_OFF if reply.text.strip() else EMPTY)
    roles = [m.role for m in store.messages("c1")]
    assert roles == (["user", "assistant"] if reply.text.strip() else ["user"])


def test_stats_and_exports_count_an_empty_reply_as_no_reply_and_name_each_outcome(conversation, store):
    from chatbot.store.analytics import to_markdown, turn_records
    from chatbot.store.stats import conversation_stats

    server, bot = conversation("anthropic", "\n")
    bot.ask("c1", "Where is my parcel?")
    server.pieces, server.finish = ["Your parcel left our depot on"], "length"
    bot.ask("c1", "Order 1234.")
    server.pieces, server.finish = ["I can't help with that."], "refusal"
    bot.ask("c1", "Tell me another customer's address.")

    messages = store.messages("c1")
    stats = conversation_stats(messages)
    assert stats["failed_turns"] == 1 and stats["turns"] == 2
    summary = store.summaries(["c1"])[0]
    assert (summary.turns, summary.failed) == (2, 1)
    conversation_record = store.conversation("c1")
    assert [r["kind"] for r in turn_records([conversation_record])] == ["failed", "reply", "reply"]
    exported = to_markdown(conversation_record)
    assert "> No answer: the model returned an empty reply" in exported
    assert "> The reply was cut off at the token limit" in exported
    assert "> Refused: the model declined to answer" in exported
    assert "With a person" not in exported


class SummaryCutOffServer(AnthropicServer):
    """Answers the turns in full, but stops every summary of old turns at the token limit."""

    def stream_frames(self, body: dict):
        summary = "Summary so far:" in str(body["messages"][-1]["content"])
        pieces, finish = self.pieces, self.finish
        if summary:
            self.pieces, self.finish = ["The customer asked about"], "length"
        try:
            return super().stream_frames(body)
        finally:
            self.pieces, self.finish = pieces, finish


def test_a_summary_cut_off_at_the_token_limit_is_not_kept_as_the_summary(module_kb, store):
    with SummaryCutOffServer(ANSWER) as server:
        backend = AnthropicBackend(api_key=KEY, base_url=server.base_url, timeout=5.0, max_retries=0)
        bot = Chatbot(knowledge=module_kb, backend=backend, store=store, window_messages=2)
        for text in ("My camera is offline.", "It still is.", "Any other idea?"):
            assert bot.ask("c1", text).text == ANSWER
    summary = store.state("c1")["memory"]["summary"]
    assert summary and "The customer asked about" not in summary
    assert "- Customer: My camera is offline." in summary  # the offline method's summary instead
