"""Why a reply ended, through each provider's real client against its local protocol server: a
complete answer, a reply cut off at the token limit, a refusal, a blank or an empty reply all end
the stream with a `Usage` that names the stop reason in the product's words."""

from __future__ import annotations

import pytest

from common.types import ChatRequest, Stop, Usage
from devtools.servers.ollama import OllamaServer
from tests.providers import PROVIDERS

REQUEST = ChatRequest(system="You are the support desk.", messages=[{"role": "user", "content": "Refund?"}],
                      max_tokens=64)


def run(provider: str, reply: str | list[str], finish: str = "end") -> tuple[str, Usage]:
    server_class, make = PROVIDERS[provider]
    with server_class(reply, finish=finish) as server:
        out = list(make(server).stream(REQUEST))
    assert isinstance(out[-1], Usage) and sum(isinstance(p, Usage) for p in out) == 1
    return "".join(p for p in out if isinstance(p, str)), out[-1]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_complete_answer_ends_the_turn(provider):
    text, usage = run(provider, "Refunds take 5 days.")
    assert text == "Refunds take 5 days." and usage.stop_reason == Stop.END


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_reply_cut_off_at_the_token_limit_says_so(provider):
    text, usage = run(provider, "Refunds take 5 working days once the parcel", finish="length")
    assert text == "Refunds take 5 working days once the parcel" and usage.stop_reason == Stop.LENGTH


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_refusal_is_named_a_refusal(provider):
    text, usage = run(provider, "I can't help with that.", finish="refusal")
    assert text == "I can't help with that." and usage.stop_reason == Stop.REFUSAL


def test_openai_content_filter_is_a_refusal():
    text, usage = run("openai", "Here is how to", finish="content_filter")
    assert usage.stop_reason == Stop.REFUSAL


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("reply", ["\n\n", ""], ids=["blank", "empty"])
def test_a_blank_or_empty_reply_still_ends_with_its_stop_reason(provider, reply):
    text, usage = run(provider, reply)
    assert text == reply and usage.stop_reason == Stop.END


def test_servers_refuse_a_finish_their_protocol_cannot_send():
    with pytest.raises(ValueError, match="refusal"):
        OllamaServer("x", finish="refusal")
