"""OpenAI's reasoning models (o-series, gpt-5 family) through the real `openai` client, against the local
Chat Completions server, which refuses `max_tokens` and a temperature for them as the real API does."""

from __future__ import annotations

import openai
import pytest

from backends.openai_backend import OpenAIBackend
from backends.openai_models import CHAT, REASONING, rules_for
from common.errors import BackendError
from common.types import ChatRequest, Usage
from devtools.servers.openai import OpenAIServer

KEY = "sk-test-0c4e1a7b9d2f5863"
REPLY = "Refunds reach your card within 5 working days."
REQUEST = ChatRequest(system="You are the support desk.", messages=[{"role": "user", "content": "Refund?"}],
                      temperature=0.2, max_tokens=300)


@pytest.fixture
def server():
    with OpenAIServer(REPLY, api_key=KEY, usage=(20, 9)) as running:
        yield running


def test_the_wire_server_refuses_max_tokens_and_temperature_for_reasoning_models_like_the_api(server):
    client = openai.OpenAI(api_key=KEY, base_url=server.base_url, max_retries=0)
    messages = [{"role": "user", "content": "Refund?"}]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="o3-mini", messages=messages, max_tokens=300)
    assert refused.value.status_code == 400
    assert refused.value.body == {
        "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
                   "Use 'max_completion_tokens' instead.",
        "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="gpt-5-mini", messages=messages, max_completion_tokens=300,
                                       temperature=0.2)
    assert refused.value.code == "unsupported_value" and refused.value.param == "temperature"
    assert "does not support 0.2 with this model" in refused.value.message
    # What it accepts: the completion-token limit, and the default temperature or none.
    ok = client.chat.completions.create(model="o1", messages=messages, max_completion_tokens=300, temperature=1)
    assert ok.choices[0].message.content == REPLY
    # Other models keep max_tokens and any temperature.
    assert client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=300,
                                          temperature=0.2).choices[0].message.content == REPLY


@pytest.mark.parametrize("model", ["o1", "o1-mini", "o3", "o3-mini-2025-01-31", "o4-mini", "gpt-5", "gpt-5-mini",
                                   "gpt-5-nano", "gpt-5.1", "gpt-5-chat-latest"])
def test_a_reasoning_model_streams_a_reply_with_max_completion_tokens_and_no_temperature(server, model):
    backend = OpenAIBackend(model, api_key=KEY, base_url=server.base_url, timeout=5.0, max_retries=0)
    pieces = list(backend.stream(REQUEST))
    assert "".join(p for p in pieces if isinstance(p, str)) == REPLY
    assert pieces[-1] == Usage(20, 9, "end_turn")
    sent = server.last.body
    assert sent["max_completion_tokens"] == 300
    assert "max_tokens" not in sent and "temperature" not in sent


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4.1", "llama-3.1-8b-instruct", "qwen2.5:7b"])
def test_other_models_keep_max_tokens_and_the_temperature(server, model):
    backend = OpenAIBackend(model, api_key=KEY, base_url=server.base_url, timeout=5.0, max_retries=0)
    assert "".join(p for p in backend.stream(REQUEST) if isinstance(p, str)) == REPLY
    sent = server.last.body
    assert sent["max_tokens"] == 300 and sent["temperature"] == 0.2
    assert "max_completion_tokens" not in sent


def test_the_table_reads_names_with_a_provider_part_and_dates():
    assert rules_for("openai/o3-mini") == REASONING
    assert rules_for("O4-mini-2025-04-16") == REASONING
    assert rules_for("gpt-4o") == CHAT and rules_for("omni-moderation-latest") == CHAT


def test_a_refused_parameter_reaches_the_agent_as_the_servers_words(server, monkeypatch):
    # Were the table wrong about a model, the agent would read the API's own reason, not a bare status.
    import backends.openai_backend as module

    monkeypatch.setattr(module, "generation_params", lambda model, t, m: {"max_tokens": m, "temperature": t})
    backend = OpenAIBackend("o3", api_key=KEY, base_url=server.base_url, timeout=5.0, max_retries=0)
    with pytest.raises(BackendError, match="max_completion_tokens"):
        list(backend.stream(REQUEST))
