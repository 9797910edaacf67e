"""The Ollama backend, through the real `ollama` client, against a local /api/chat server."""

from __future__ import annotations

import socket

import pytest

from common.types import ChatRequest, Usage
from backends.ollama_backend import OllamaBackend
from common.settings import Settings
from common.errors import (
    BackendAuthError,
    BackendError,
    BackendRateLimited,
    BackendStreamBroken,
    BackendTimeout,
    BackendUnavailable,
)
from devtools.servers.ollama import OllamaServer

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
    with OllamaServer(REPLY, usage=(48, 16), models=["llama3.2"]) as running:
        yield running


def backend_for(server: OllamaServer, **options) -> OllamaBackend:
    options = {"timeout": 5.0, "max_retries": 2, "retry_base_delay": 0.001, **options}
    return OllamaBackend("llama3.2", host=server.base_url, **options)


def collect(backend: OllamaBackend, request: ChatRequest = REQUEST) -> tuple[list[str], list[Usage]]:
    texts, usages = [], []
    for piece in backend.stream(request):
        (usages if isinstance(piece, Usage) else texts).append(piece)
    return texts, usages


def test_reply_streams_in_pieces_and_ends_with_reported_usage(server):
    out = list(backend_for(server).stream(REQUEST))

    texts = [p for p in out if isinstance(p, str)]
    assert len(texts) > 5
    assert "".join(texts) == REPLY
    assert out[-1] == Usage(input_tokens=48, output_tokens=16, stop_reason="end_turn")
    assert sum(isinstance(p, Usage) for p in out) == 1


def test_request_carries_prompt_conversation_and_generation_settings(server):
    backend_for(server).complete(REQUEST)

    sent = server.last
    assert sent.path == "/api/chat"
    assert sent.body["model"] == "llama3.2"
    assert sent.body["messages"] == [{"role": "system", "content": REQUEST.system}, *REQUEST.messages]
    assert sent.body["options"]["temperature"] == 0.3
    assert sent.body["options"]["num_predict"] == 256
    assert sent.body["stream"] is True
    assert not sent.body.get("format")
    assert "repeat_penalty" not in sent.body["options"]  # none set: Ollama's own default stands


def test_a_templates_repetition_penalty_reaches_ollama(server):
    request = ChatRequest(system="Be brief.", messages=[{"role": "user", "content": "hi"}], repetition_penalty=1.2)
    backend_for(server).complete(request)
    assert server.last.body["options"]["repeat_penalty"] == 1.2


def test_json_mode_asks_for_json_format(server):
    request = ChatRequest(system="Reply in JSON.", messages=[{"role": "user", "content": "Classify: refund"}],
                          json_mode=True)
    backend_for(server).complete(request)

    assert server.last.body["format"] == "json"


def test_missing_model_tells_how_to_pull_it(server):
    backend = OllamaBackend("mistral", host=server.base_url, max_retries=2, retry_base_delay=0.001)
    with pytest.raises(BackendError, match="ollama pull mistral"):
        collect(backend)
    assert len(server.requests) == 1


def test_refused_credentials_are_an_auth_error_and_not_retried():
    with OllamaServer(REPLY, api_key="proxy-secret") as guarded:
        with pytest.raises(BackendAuthError) as caught:
            collect(backend_for(guarded))
        assert "OLLAMA_API_KEY" in str(caught.value) and "refused" in str(caught.value)
        assert len(guarded.requests) == 1


def test_rate_limit_then_success_delivers_the_reply(server):
    server.fail(429)
    texts, usages = collect(backend_for(server))

    assert "".join(texts) == REPLY
    assert usages == [Usage(48, 16, "end_turn")]
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


def test_server_errors_past_every_retry_make_the_backend_unavailable(server):
    server.fail(500, 500, 502, 500)
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
    backend = OllamaBackend(host=f"http://127.0.0.1:{port}", max_retries=1, retry_base_delay=0.001)
    waits: list[float] = []
    backend.sleep = waits.append

    with pytest.raises(BackendUnavailable) as caught:
        collect(backend)
    assert f"127.0.0.1:{port}" in str(caught.value) and "ollama serve" in str(caught.value)
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


def test_model_error_before_any_text_is_retried(server):
    server.fail("stream_error")

    assert backend_for(server).complete(REQUEST) == REPLY
    assert len(server.requests) == 2


def test_model_error_after_text_breaks_the_reply(server):
    server.cut_after = 3
    server.fail("stream_error")
    received: list[str] = []
    with pytest.raises(BackendStreamBroken, match="runner process has terminated"):
        for piece in backend_for(server).stream(REQUEST):
            received.append(piece)

    assert received == server.pieces[:3]
    assert len(server.requests) == 1


def test_settings_from_environment_reach_the_client(server, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", server.base_url)
    monkeypatch.setenv("CHATBOT_REQUEST_TIMEOUT", "12")
    monkeypatch.setenv("CHATBOT_MAX_RETRIES", "1")
    settings = Settings.load(secrets={})

    backend = OllamaBackend.from_settings(settings)

    assert (backend.model, backend.host, backend.timeout, backend.max_retries) == (
        "llama3.2", server.base_url, 12.0, 1)
    assert backend.complete(REQUEST) == REPLY


def test_without_a_host_setting_the_local_default_is_used(monkeypatch):
    # Settings alone decide the host: the backend never reads the environment itself (settings read it
    # when they are loaded, and here they say no host).
    monkeypatch.setenv("OLLAMA_HOST", "http://elsewhere.invalid:1")
    backend = OllamaBackend.from_settings(Settings(ollama_host=""))

    assert backend.host == "http://127.0.0.1:11434"


def test_refused_key_error_carries_provider_and_status():
    with OllamaServer(REPLY, api_key="proxy-secret") as guarded:
        with pytest.raises(BackendAuthError) as caught:
            collect(backend_for(guarded))

    error = caught.value
    assert (error.provider, error.status, error.retry_after) == ("ollama", 401, None)
    assert "OLLAMA_API_KEY" in str(error)


def test_rate_limit_error_carries_the_wait_the_server_asked_for(server):
    server.retry_after = 2
    server.fail(429)
    with pytest.raises(BackendRateLimited) as caught:
        collect(backend_for(server, max_retries=0))

    error = caught.value
    assert (error.provider, error.status, error.retry_after) == ("ollama", 429, pytest.approx(2.0))
    assert error.retryable
