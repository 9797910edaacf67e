"""The OpenAI-compatible endpoint with the real `openai` SDK against the real API server: the desk
listed as a model, completions streamed and not (usage included), a conversation id header mapped
to the stored conversation, and the SDK's own errors for a bad key or an unknown model."""

from __future__ import annotations

import json

import openai
import pytest

from api.app import create_app
from tests.api_server import desk_services, serving
from tests.fakes import FakeBackend


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    services = desk_services(tmp_path_factory.mktemp("api-openai"))
    app = create_app(services)
    with serving(app) as url:
        _, key = app.state.desk.keys.create("open webui", "agent")
        yield app, openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0), url
    services.knowledge.close()


def test_the_desk_is_listed_as_a_model(desk):
    _, sdk, _ = desk
    assert [m.id for m in sdk.models.list()] == ["support-desk"]


def test_a_completion_answers_from_the_knowledge_base_with_citations(desk):
    app, sdk, _ = desk
    answer = sdk.chat.completions.create(model="support-desk",
                                         messages=[{"role": "user", "content": "How do I get a refund?"}])
    assert answer.choices[0].finish_reason == "stop" and "refund" in answer.choices[0].message.content.lower()
    assert answer.usage.prompt_tokens > 0 and answer.usage.total_tokens == (
        answer.usage.prompt_tokens + answer.usage.completion_tokens)
    extras = answer.model_extra
    assert extras["citations"] and extras["intent"]["intent"] == "refunds"
    stored = app.state.desk.services.store.conversation(extras["conversation_id"])
    assert stored["messages"][-1].content == answer.choices[0].message.content


def test_a_streamed_completion_ends_with_usage_and_done(desk):
    _, sdk, _ = desk
    stream = sdk.chat.completions.create(model="support-desk", stream=True, stream_options={"include_usage": True},
                                         messages=[{"role": "user", "content": "where is my parcel"}])
    chunks = list(stream)  # the SDK stops at `data: [DONE]`
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


def test_a_conversation_id_header_continues_the_stored_conversation(desk):
    app, sdk, _ = desk
    headers = {"X-Conversation-Id": "webui-chat-42"}  # a client's own id maps to one stored conversation
    first = sdk.chat.completions.create(model="support-desk", extra_headers=headers,
                                        messages=[{"role": "user", "content": "How do I get a refund?"}])
    history = [{"role": "user", "content": "How do I get a refund?"},
               {"role": "assistant", "content": first.choices[0].message.content},
               {"role": "user", "content": "how long does it take?"}]
    second = sdk.chat.completions.create(model="support-desk", extra_headers=headers, messages=history)
    conversation = first.model_extra["conversation_id"]
    assert second.model_extra["conversation_id"] == conversation
    stored = app.state.desk.services.store.conversation(conversation)
    assert [m.content for m in stored["messages"] if m.role == "user"] == [
        "How do I get a refund?", "how long does it take?"]
    raw = sdk.chat.completions.with_raw_response.create(
        model="support-desk", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-conversation-id"] != conversation  # no header: a new conversation


def test_a_ticket_id_that_looks_like_the_desks_own_is_still_mapped_per_key(desk):
    app, sdk, url = desk
    other = openai.OpenAI(base_url=f"{url}/v1", api_key=app.state.desk.keys.create("crm", "agent")[1],
                          max_retries=0)
    ticket = {"X-Conversation-Id": "0123456789abcdef"}  # 16 hex characters, as the desk's ids are
    ask = {"model": "support-desk", "extra_headers": ticket, "messages": [{"role": "user", "content": "refund?"}]}
    first, again = sdk.chat.completions.create(**ask), sdk.chat.completions.create(**ask)
    theirs = other.chat.completions.create(**ask)
    mine = first.model_extra["conversation_id"]
    assert again.model_extra["conversation_id"] == mine != "0123456789abcdef"
    assert theirs.model_extra["conversation_id"] not in (mine, "0123456789abcdef")  # two keys, two threads
    assert not app.state.desk.services.store.exists("0123456789abcdef")
    held = {"X-Conversation-Id": mine}  # the id the desk gave back continues the same conversation
    assert sdk.chat.completions.create(**{**ask, "extra_headers": held}).model_extra["conversation_id"] == mine


def test_the_sdk_raises_its_own_errors(desk):
    _, sdk, url = desk
    with pytest.raises(openai.NotFoundError, match="support-desk"):
        sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="desk_00000000_" + "x" * 43, max_retries=0).models.list()
    with pytest.raises(openai.UnprocessableEntityError):
        sdk.chat.completions.create(model="support-desk", messages=[{"role": "system", "content": "be brief"}])


def test_a_backend_failing_mid_stream_raises_in_the_sdk(desk):
    app, _, _ = desk
    failing = create_app(app.state.desk.services, FakeBackend(["One two three four."], fail_after_pieces=1))
    with serving(failing) as url:
        _, key = failing.state.desk.keys.create("sdk", "agent")
        sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        stream = sdk.chat.completions.create(model="support-desk", stream=True,
                                             messages=[{"role": "user", "content": "hello"}])
        with pytest.raises(openai.APIError, match="stream broke"):
            list(stream)


@pytest.mark.parametrize("finish, stop_reason, finish_reason", [("end", "end_turn", "stop"),
                                                                ("length", "max_tokens", "length")])
def test_the_backends_stop_reason_reaches_both_faces(desk, finish, stop_reason, finish_reason):
    """An OpenAI-protocol server as the desk's backend: its finish reason, read by the backend,
    comes out as the stream's stop reason and as the compatible endpoint's finish_reason."""
    import httpx

    from backends.openai_backend import OpenAIBackend
    from devtools.servers.openai import OpenAIServer
    from tests.test_api import sse

    app, _, _ = desk
    with OpenAIServer("Refunds take 5 to 10 business days [1].", finish=finish, usage=(300, 12)) as server:
        backend = OpenAIBackend("gpt-4o-mini", api_key="sk-test", base_url=server.base_url, max_retries=0)
        remote = create_app(app.state.desk.services, backend)
        with serving(remote) as url:
            _, key = remote.state.desk.keys.create("stops", "agent")
            with httpx.stream("POST", f"{url}/v1/chat/stream", json={"text": "How do I get a refund?"},
                              headers={"Authorization": f"Bearer {key}"}, timeout=60) as r:
                events = [e for e in sse(r.read().decode()) if "event" in e]
            done = json.loads(events[-1]["data"])
            assert done["stop_reason"] == stop_reason and done["usage"]["total_tokens"] == 312
            sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
            answer = sdk.chat.completions.create(model="support-desk",
                                                 messages=[{"role": "user", "content": "How do I get a refund?"}])
            assert answer.choices[0].finish_reason == finish_reason
            assert answer.usage.prompt_tokens == 300 and answer.model_extra["citations"]


def test_a_conversation_with_a_person_says_so_rather_than_a_blank_reply(desk):
    """Open WebUI shows an empty reply as a blank bubble: both faces say the conversation is with a person."""
    import httpx

    from chatbot.triage.triage import HANDOFF_NOTICE

    app, sdk, url = desk
    ticket = {"X-Conversation-Id": "webui-chat-handoff"}
    first = sdk.chat.completions.create(model="support-desk", extra_headers=ticket,
                                        messages=[{"role": "user", "content": "How do I get a refund?"}])
    conversation = first.model_extra["conversation_id"]
    key = sdk.api_key
    handed = httpx.post(f"{url}/v1/conversations/{conversation}/handoff", headers={"Authorization": f"Bearer {key}"})
    assert handed.status_code == 200
    answer = sdk.chat.completions.create(model="support-desk", extra_headers=ticket,
                                         messages=[{"role": "user", "content": "Hello? Is anyone there?"}])
    assert answer.choices[0].message.content == HANDOFF_NOTICE and answer.choices[0].finish_reason == "stop"
    stream = sdk.chat.completions.create(model="support-desk", extra_headers=ticket, stream=True,
                                         messages=[{"role": "user", "content": "Still waiting."}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == HANDOFF_NOTICE
    stored = app.state.desk.services.store.conversation(conversation)["messages"]
    assert [m.content for m in stored[-2:]] == ["Hello? Is anyone there?", "Still waiting."]  # no reply stored
