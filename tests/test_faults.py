"""Backend faults, injected through each provider's local protocol server and its real SDK client:
for every fault class and provider a whole turn runs through the Chatbot, then through the chat
page in AppTest. The customer's message is always kept in the conversation store, the person sees
a message naming the problem (never a traceback), and the next turn of the same conversation
succeeds.

Through the Chatbot a request is retried once, its backoff recorded instead of waited out; the
page runs with retries off (CHATBOT_MAX_RETRIES=0). The timeout is a fraction of a second: the
suite measures behaviour, not waiting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from backends.anthropic_backend import AnthropicBackend
from backends.ollama_backend import OllamaBackend
from backends.openai_backend import OpenAIBackend
from chatbot.turn.bot import Chatbot
from chatbot.store.outcomes import CUT_OFF, EMPTY, REFUSAL
from common.errors import (
    BackendAuthError,
    BackendError,
    BackendRateLimited,
    BackendStreamBroken,
    BackendTimeout,
    BackendUnavailable,
)
from devtools.servers.anthropic import AnthropicServer
from devtools.servers.base import split_reply
from devtools.servers.ollama import OllamaServer
from devtools.servers.openai import OpenAIServer
from tests.conftest import app_environment

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-test-faults-8e4a1f"
ANSWER = "Refunds reach your card within 5 to 7 working days [1]."
TIMEOUT = 0.3  # seconds the client waits for a hung server
PAGE_TIMEOUT = 180  # AppTest's limit on one script run; the first run loads the embedding model
SERVERS = {"openai": OpenAIServer, "anthropic": AnthropicServer, "ollama": OllamaServer}


def backend_for(provider: str, server, **options):
    options = {"timeout": TIMEOUT, "max_retries": 1, "retry_base_delay": 0.001, **options}
    if provider == "openai":
        return OpenAIBackend("gpt-4o-mini", api_key=KEY, base_url=server.base_url, **options)
    if provider == "anthropic":
        return AnthropicBackend(api_key=KEY, base_url=server.base_url, **options)
    return OllamaBackend(host=server.base_url, **options)


@dataclass
class Fault:
    """How to make a provider's server fail one turn, and what the person must read about it."""

    name: str
    failures: tuple = ()  # the server's failure queue: enough to outlast the backend's one retry
    reply: str | None = None  # the first turn's reply, when the fault is in the reply itself
    finish: str = "end"
    cut_after: int | None = None
    error: type[BackendError] | None = None  # the typed error raised, or None for a reply outcome
    says: tuple[str, ...] = ()  # words the message shown must contain (any case)
    outcome: str = ""
    providers: tuple[str, ...] = tuple(SERVERS)
    page_says: tuple[str, ...] = field(default=())


FAULTS = [
    Fault("401 bad key", (401,), error=BackendAuthError, says=("refused the", "key", "401"),
          page_says=("no reply", "401")),
    Fault("429 with Retry-After", (429, 429), error=BackendRateLimited, says=("limiting requests", "429"),
          page_says=("no reply", "429")),
    Fault("500", (500, 500), error=BackendUnavailable, says=("trouble", "500"), page_says=("no reply", "500")),
    Fault("timeout", ("hang", "hang"), error=BackendTimeout, says=("did not answer within",),
          page_says=("no reply", "did not answer within")),
    Fault("cut stream", ("cut",), error=BackendStreamBroken, says=("mid-reply", "ask again"),
          page_says=("interrupted", "mid-reply", "what arrived before it stopped")),
    Fault("cut before any text", ("cut", "cut"), cut_after=0, error=BackendStreamBroken,
          says=("closed the reply before sending any text",), page_says=("no reply", "before sending any text")),
    Fault("blank reply", reply="\n\n", outcome=EMPTY, page_says=("no answer", "empty reply", "send it again")),
    Fault("empty stream", reply="", outcome=EMPTY, page_says=("no answer", "empty reply")),
    Fault("truncated", reply="Refunds reach your card within", finish="length", outcome=CUT_OFF,
          page_says=("cut off at the token limit",)),
    Fault("refusal", reply="I can't help with that.", finish="refusal", outcome=REFUSAL,
          providers=("openai", "anthropic"), page_says=("refused",)),
]
CASES = [pytest.param(fault, provider, id=f"{fault.name}-{provider}")
         for fault in FAULTS for provider in fault.providers]


def script(server, fault: Fault) -> None:
    """Make `server` answer the next turn with `fault`, and every later one with ANSWER."""
    server.pieces, server.finish, server.cut_after = split_reply(ANSWER), "end", None
    server.retry_after, server.hang_seconds = 0.05, 1.0
    if fault.reply is not None:
        server.pieces = [fault.reply] if fault.reply else []
        server.finish = fault.finish
    server.cut_after = fault.cut_after
    server.fail(*fault.failures)


def after_fault(server) -> None:
    server.pieces, server.finish, server.cut_after = split_reply(ANSWER), "end", None


@pytest.fixture(scope="module")
def store(module_redis):
    from chatbot.store.conversations import ConversationStore

    return ConversationStore(module_redis, ttl_seconds=3600)


@pytest.fixture(scope="module")
def servers():
    running = {name: server_class(ANSWER, api_key=KEY if name != "ollama" else None).start()
               for name, server_class in SERVERS.items()}
    yield running
    for server in running.values():
        server.stop()


@pytest.mark.parametrize("fault,provider", CASES)
def test_a_backend_fault_keeps_the_message_names_the_problem_and_the_next_turn_works(
        fault, provider, module_kb, store, servers):
    server = servers[provider]
    backend = backend_for(provider, server)
    waits: list[float] = []
    backend.sleep = waits.append  # the backoff is recorded, not waited out
    bot = Chatbot(knowledge=module_kb, backend=backend, store=store)
    conversation = store.new_id()
    script(server, fault)

    reply = bot.send(conversation, "I was charged twice for order 1234.")
    if fault.error is not None:
        with pytest.raises(fault.error) as raised:
            reply.consume()
        message = str(raised.value)
        assert all(words.lower() in message.lower() for words in fault.says), message
        assert "Traceback" not in message and raised.value.provider == provider
        stored = store.messages(conversation)
        if reply.text:  # it failed mid-reply: what arrived is kept, marked interrupted, with the reason
            assert [m.role for m in stored] == ["user", "assistant"]
            assert stored[1].content == reply.text and stored[1].meta.interrupted
            assert stored[1].meta.error == message
        else:
            assert [m.role for m in stored] == ["user"]
            assert stored[0].meta.error == message
    else:
        reply.consume()
        assert reply.meta.outcome == fault.outcome
    assert store.messages(conversation)[0].content == "I was charged twice for order 1234."
    if fault.name.startswith("429"):
        assert raised.value.status == 429 and raised.value.retry_after == pytest.approx(0.05)
        assert waits and all(w >= 0.05 for w in waits)  # the wait the server asked for was honoured

    after_fault(server)
    assert bot.ask(conversation, "Can you check it?").text == ANSWER
    customer = [m.content for m in store.messages(conversation) if m.role == "user"]
    assert customer == ["I was charged twice for order 1234.", "Can you check it?"]


# -- the chat page ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_env(tmp_path_factory, servers):
    with app_environment(
        tmp_path_factory.mktemp("faults-app"),
        OPENAI_API_KEY=KEY, OPENAI_BASE_URL=servers["openai"].base_url,
        ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=servers["anthropic"].base_url,
        OLLAMA_HOST=servers["ollama"].base_url,
        CHATBOT_MAX_RETRIES="0", CHATBOT_REQUEST_TIMEOUT=str(TIMEOUT),
        CHATBOT_REQUESTS_PER_MINUTE="0", CHATBOT_CONVERSATION_TOKEN_LIMIT="0", CHATBOT_DAILY_TOKEN_LIMIT="0",
    ):
        yield servers


def page_text(at: AppTest) -> str:
    """Everything a person reads in the conversation: messages, notices, errors and warnings."""
    parts = [md.value for m in at.chat_message for md in m.markdown]
    parts += [t.value for m in at.chat_message for t in m.text]  # customer messages, shown as typed
    parts += [e.value for e in at.main.error] + [w.value for w in at.main.warning]
    return " ".join(parts).lower()


@pytest.mark.parametrize("fault,provider", CASES)
def test_the_chat_page_names_the_fault_and_keeps_the_conversation_going(fault, provider, app_env):
    server = app_env[provider]
    at = AppTest.from_file(str(ROOT / "views" / "chat.py"), default_timeout=PAGE_TIMEOUT).run()
    at.selectbox(key="chat_backend").select(provider).run()
    assert not at.exception
    # Single retries are off on the page (CHATBOT_MAX_RETRIES=0): one failure is the whole fault.
    script(server, Fault(fault.name, fault.failures[:1], fault.reply, fault.finish, fault.cut_after))

    at.chat_input(key="chat_input").set_value("How do I get a refund?").run()
    assert not at.exception
    shown = page_text(at)
    assert "how do i get a refund?" in shown  # the customer's message stays on the page
    assert all(words in shown for words in fault.page_says), shown
    assert "traceback" not in shown
    if fault.outcome == EMPTY or (fault.error is not None and "no reply" in fault.page_says):
        assert at.button(key="resend_failed")  # a message that got no reply can be sent again in one click

    after_fault(server)
    retry = [b for b in at.button if b.key == "retry_backend"]
    if fault.error is BackendAuthError:
        # A refused key fails every message until someone acts: the page answers offline meanwhile,
        # says why above the conversation and offers to try the backend again once the key is fixed.
        assert "401" in " ".join(e.value for e in at.main.error) and retry
        retry[0].click().run()
    else:  # a passing fault sets nothing aside: the next message goes to the same backend
        assert not retry
    at.chat_input(key="chat_input").set_value("Where is my parcel?").run()
    assert not at.exception
    assert ANSWER.lower().removesuffix(" [1].") in page_text(at)
    customers = [m.text[0].value for m in at.chat_message if m.name == "user"]
    assert customers[:2] == ["How do I get a refund?", "Where is my parcel?"]
