"""The OpenAI backend, through the real `openai` client, against a local Chat Completions server."""

from __future__ import annotations

import socket

import openai
import pytest

from common.types import ChatRequest, Usage
from backends.openai_backend import OpenAIBackend
from common.settings import Settings
from common.errors import (
    BackendAuthError,
    BackendRateLimited,
    BackendStreamBroken,
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
)
from devtools.servers.openai import OpenAIServer

KEY = "sk-test-5f2a9c0d1e7b4a63"
REPLY = "Your refund was issued on Monday and reaches your card within 5 working days."
REQUEST = ChatRequest(
    system="You are the support desk of Acme Outfitters. Answer from the knowledge base.",
    messages=[
        {"role": "user", "content": "Where is my refund?"},
        {"role": "assistant", "content": "Could you give me the order number?"},
        {"role": "user", "content": "Order 1234."},
    ],
    temperature=0.3,
    max_tokens=256,
)


@pytest.fixture
def server():
    with OpenAIServer(REPLY, api_key=KEY, usage=(57, 16)) as running:
        yield running


def backend_for(server: OpenAIServer, **options) -> OpenAIBackend:
    options = {"api_key": KEY, "timeout": 5.0, "max_retries": 2, "retry_base_delay": 0.001, **options}
    return OpenAIBackend("gpt-4o-mini", base_url=server.base_url, **options)


def collect(backend: OpenAIBackend, request: ChatRequest = REQUEST) -> tuple[list[str], list[Usage]]:
    texts, usages = [], []
    for piece in backend.stream(request):
        (usages if isinstance(piece, Usage) else texts).append(piece)
    return texts, usages


def test_reply_streams_in_pieces_and_ends_with_reported_usage(server):
    out = list(backend_for(server).stream(REQUEST))

    texts = [p for p in out if isinstance(p, str)]
    assert len(texts) > 5
    assert "".join(texts) == REPLY
    assert out[-1] == Usage(input_tokens=57, output_tokens=16, stop_reason="end_turn")
    assert sum(isinstance(p, Usage) for p in out) == 1


def test_request_carries_prompt_conversation_and_generation_settings(server):
    backend_for(server).complete(REQUEST)

    sent = server.last
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body["model"] == "gpt-4o-mini"
    assert sent.body["messages"] == [{"role": "system", "content": REQUEST.system}, *REQUEST.messages]
    assert sent.body["temperature"] == 0.3
    assert sent.body["max_tokens"] == 256
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert "response_format" not in sent.body


def test_json_mode_asks_for_a_json_object(server):
    request = ChatRequest(system="Reply in JSON.", messages=[{"role": "user", "content": "Classify: refund"}],
                          json_mode=True)
    backend_for(server).complete(request)

    assert server.last.body["response_format"] == {"type": "json_object"}


def test_refused_key_is_an_auth_error_naming_the_setting_and_is_not_retried(server):
    wrong = "sk-wrong-9d8c7b6a5f4e3d2c"
    with pytest.raises(BackendAuthError) as caught:
        collect(backend_for(server, api_key=wrong))

    message = str(caught.value)
    assert "OPENAI_API_KEY" in message and "refused" in message
    assert wrong not in message and wrong[-4:] not in message
    assert len(server.requests) == 1


def test_forbidden_is_an_auth_error(server):
    server.fail(403)
    with pytest.raises(BackendAuthError):
        collect(backend_for(server))
    assert len(server.requests) == 1


def test_rate_limit_then_success_delivers_the_reply(server):
    server.fail(429)
    texts, usages = collect(backend_for(server))

    assert "".join(texts) == REPLY
    assert usages == [Usage(57, 16, "end_turn")]
    assert len(server.requests) == 2


def test_retry_waits_at_least_what_the_server_asks(server):
    server.retry_after = 0.4
    server.fail(429)
    backend = backend_for(server)
    waits: list[float] = []
    backend.sleep = waits.append

    assert backend.complete(REQUEST) == REPLY
    assert waits == [pytest.approx(0.4)]


def test_rate_limit_past_every_retry_is_reported_as_rate_limited(server):
    server.fail(429, 429, 429)
    with pytest.raises(BackendRateLimited):
        collect(backend_for(server, max_retries=2))
    assert len(server.requests) == 3


def test_server_errors_past_every_retry_make_the_backend_unavailable(server):
    server.fail(500, 503, 500, 500)
    backend = backend_for(server, max_retries=2)
    waits: list[float] = []
    backend.sleep = waits.append

    with pytest.raises(BackendUnavailable):
        collect(backend)
    assert len(server.requests) == 3  # retries + 1
    assert len(waits) == 2


def test_unreachable_server_is_unavailable_after_retries():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = OpenAIBackend(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1", max_retries=1,
                            retry_base_delay=0.001)
    waits: list[float] = []
    backend.sleep = waits.append

    with pytest.raises(BackendUnavailable) as caught:
        collect(backend)
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert len(waits) == 1


@pytest.mark.parametrize("stall", ["no answer", "no first token"])
def test_a_silent_server_times_out_after_retries(server, stall):
    if stall == "no answer":
        server.fail("hang", "hang")
    else:
        server.first_token_delay = 5.0
    with pytest.raises(BackendTimeout) as caught:
        collect(backend_for(server, timeout=0.2, max_retries=1))
    assert "0.2 s" in str(caught.value)
    assert len(server.requests) == 2


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_stream_cut_halfway_is_broken_after_the_text_before_the_cut(server, framing):
    server.framing = framing
    server.fail("cut")
    received: list[str] = []
    with pytest.raises(BackendStreamBroken):
        for piece in backend_for(server).stream(REQUEST):
            received.append(piece)

    assert received == server.pieces[: len(server.pieces) // 2]
    assert len(server.requests) == 1  # text had reached the reader: no retry


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_stream_cut_before_any_text_is_retried(server, framing):
    server.framing = framing
    server.cut_after = 0
    server.fail("cut")

    assert backend_for(server).complete(REQUEST) == REPLY
    assert len(server.requests) == 2


def test_missing_key_is_a_configuration_error_naming_the_variable():
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        OpenAIBackend.from_settings(Settings())
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        OpenAIBackend()


def test_settings_from_environment_and_secrets_reach_the_client(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-environment-0000")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("CHATBOT_REQUEST_TIMEOUT", "7.5")
    monkeypatch.setenv("CHATBOT_MAX_RETRIES", "1")
    settings = Settings.load(secrets={"openai_api_key": KEY})  # secrets win over the environment

    backend = OpenAIBackend.from_settings(settings, model="gpt-4.1-mini")

    assert (backend.model, backend.timeout, backend.max_retries) == ("gpt-4.1-mini", 7.5, 1)
    assert backend.complete(REQUEST) == REPLY
    assert server.last.headers["authorization"] == f"Bearer {KEY}"
    assert server.last.body["model"] == "gpt-4.1-mini"


def test_compatible_server_needs_no_key():
    with OpenAIServer(REPLY) as keyless:
        backend = OpenAIBackend.from_settings(Settings(openai_base_url=keyless.base_url), model="qwen2.5-7b")
        assert backend.complete(REQUEST) == REPLY
        assert keyless.last.body["model"] == "qwen2.5-7b"


def test_server_also_answers_without_streaming(server):
    client = openai.OpenAI(api_key=KEY, base_url=server.base_url, max_retries=0)
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=REQUEST.messages)

    assert completion.choices[0].message.content == REPLY
    assert completion.usage.prompt_tokens == 57


def test_error_event_before_any_text_is_retried(server):
    server.fail("stream_error")

    assert backend_for(server).complete(REQUEST) == REPLY
    assert len(server.requests) == 2


def test_error_event_after_text_breaks_the_reply(server):
    server.cut_after = 3
    server.fail("stream_error")
    received: list[str] = []
    with pytest.raises(BackendStreamBroken):
        for piece in backend_for(server).stream(REQUEST):
            received.append(piece)

    assert received == server.pieces[:3]
    assert len(server.requests) == 1


def test_refused_key_error_carries_provider_and_status(server):
    with pytest.raises(BackendAuthError) as caught:
        collect(backend_for(server, api_key="sk-wrong-0000"))

    error = caught.value
    assert (error.provider, error.status, error.retry_after) == ("openai", 401, None)
    assert "OPENAI_API_KEY" in str(error)


def test_rate_limit_error_carries_the_wait_the_server_asked_for(server):
    server.retry_after = 2
    server.fail(429)
    with pytest.raises(BackendRateLimited) as caught:
        collect(backend_for(server, max_retries=0))

    error = caught.value
    assert (error.provider, error.status, error.retry_after) == ("openai", 429, pytest.approx(2.0))
    assert error.retryable
