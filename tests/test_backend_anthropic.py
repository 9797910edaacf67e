"""The Anthropic backend, through the real `anthropic` client, against a local Messages API server."""

from __future__ import annotations

import socket

import anthropic
import pytest

from backends.anthropic_backend import AnthropicBackend
from common.types import ChatRequest, Usage
from common.settings import Settings
from common.errors import (
    BackendAuthError,
    BackendRateLimited,
    BackendStreamBroken,
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
)
from devtools.servers.anthropic import AnthropicServer

KEY = "sk-ant-test-7c1e0b9a8d2f4e65"
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
    with AnthropicServer(REPLY, api_key=KEY, usage=(61, 17)) as running:
        yield running


def backend_for(server: AnthropicServer, **options) -> AnthropicBackend:
    options = {"api_key": KEY, "timeout": 5.0, "max_retries": 2, "retry_base_delay": 0.001, **options}
    return AnthropicBackend("claude-haiku-4-5", base_url=server.base_url, **options)


def collect(backend: AnthropicBackend, request: ChatRequest = REQUEST) -> tuple[list[str], list[Usage]]:
    texts, usages = [], []
    for piece in backend.stream(request):
        (usages if isinstance(piece, Usage) else texts).append(piece)
    return texts, usages


def test_reply_streams_in_pieces_and_ends_with_reported_usage(server):
    out = list(backend_for(server).stream(REQUEST))

    texts = [p for p in out if isinstance(p, str)]
    assert len(texts) > 5
    assert "".join(texts) == REPLY
    assert out[-1] == Usage(input_tokens=61, output_tokens=17, stop_reason="end_turn")
    assert sum(isinstance(p, Usage) for p in out) == 1


def test_request_carries_prompt_conversation_and_generation_settings(server):
    backend_for(server).complete(REQUEST)

    sent = server.last
    assert sent.path == "/v1/messages"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["anthropic-version"]
    assert sent.body["model"] == "claude-haiku-4-5"
    assert sent.body["system"] == REQUEST.system
    assert sent.body["messages"] == REQUEST.messages
    assert sent.body["max_tokens"] == 256
    assert sent.body["stream"] is True
    # The API version this client speaks refuses sampling parameters with a 400.
    assert not {"temperature", "top_p", "top_k"} & set(sent.body)


def test_server_refuses_sampling_parameters_like_the_api(server):
    client = anthropic.Anthropic(api_key=KEY, base_url=server.base_url, max_retries=0)
    with pytest.raises(anthropic.BadRequestError, match="temperature"):
        client.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=REQUEST.messages,
                               extra_body={"temperature": 0.3})


def test_json_mode_sends_nothing_extra(server):
    request = ChatRequest(system="Reply in JSON.", messages=[{"role": "user", "content": "Classify: refund"}],
                          json_mode=True)
    backend_for(server).complete(request)

    assert set(server.last.body) == {"model", "max_tokens", "messages", "stream", "system"}


def test_refused_key_is_an_auth_error_naming_the_setting_and_is_not_retried(server):
    wrong = "sk-ant-wrong-3e4f5a6b7c8d9e0f"
    with pytest.raises(BackendAuthError) as caught:
        collect(backend_for(server, api_key=wrong))

    message = str(caught.value)
    assert "ANTHROPIC_API_KEY" in message and "refused" in message
    assert wrong not in message
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
    assert usages == [Usage(61, 17, "end_turn")]
    assert len(server.requests) == 2


def test_retry_waits_at_least_what_the_server_asks(server):
    server.retry_after = 0.3
    server.fail(429)
    backend = backend_for(server)
    waits: list[float] = []
    backend.sleep = waits.append

    assert backend.complete(REQUEST) == REPLY
    assert waits == [pytest.approx(0.3)]


def test_rate_limit_past_every_retry_is_reported_as_rate_limited(server):
    server.fail(429, 429, 429)
    with pytest.raises(BackendRateLimited):
        collect(backend_for(server, max_retries=2))
    assert len(server.requests) == 3


@pytest.mark.parametrize("status", [500, 529])
def test_server_errors_past_every_retry_make_the_backend_unavailable(server, status):
    server.fail(*[status] * 4)
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
    backend = AnthropicBackend(api_key=KEY, base_url=f"http://127.0.0.1:{port}", max_retries=1,
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


def test_overloaded_event_before_any_text_is_retried(server):
    server.fail("stream_error")

    assert backend_for(server).complete(REQUEST) == REPLY
    assert len(server.requests) == 2


def test_overloaded_event_after_text_breaks_the_reply(server):
    server.cut_after = 3
    server.fail("stream_error")
    received: list[str] = []
    with pytest.raises(BackendStreamBroken):
        for piece in backend_for(server).stream(REQUEST):
            received.append(piece)

    assert received == server.pieces[:3]
    assert len(server.requests) == 1


def test_missing_key_is_a_configuration_error_naming_the_variable():
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        AnthropicBackend.from_settings(Settings())
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        AnthropicBackend()


def test_settings_from_environment_reach_the_client(server, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    monkeypatch.setenv("CHATBOT_REQUEST_TIMEOUT", "9")
    monkeypatch.setenv("CHATBOT_MAX_RETRIES", "0")
    settings = Settings.load(secrets={})

    backend = AnthropicBackend.from_settings(settings, model="claude-sonnet-4-5")

    assert (backend.model, backend.timeout, backend.max_retries) == ("claude-sonnet-4-5", 9.0, 0)
    assert backend.complete(REQUEST) == REPLY
    assert server.last.headers["authorization"] == f"Bearer {KEY}"
    assert server.last.body["model"] == "claude-sonnet-4-5"


def test_refused_key_error_carries_provider_and_status(server):
    with pytest.raises(BackendAuthError) as caught:
        collect(backend_for(server, api_key="sk-ant-wrong-0000"))

    error = caught.value
    assert (error.provider, error.status, error.retry_after) == ("anthropic", 401, None)
    assert "ANTHROPIC_API_KEY" in str(error)


def test_rate_limit_error_carries_the_wait_the_server_asked_for(server):
    server.retry_after = 2
    server.fail(429)
    with pytest.raises(BackendRateLimited) as caught:
        collect(backend_for(server, max_retries=0))

    error = caught.value
    assert (error.provider, error.status, error.retry_after) == ("anthropic", 429, pytest.approx(2.0))
    assert error.retryable
