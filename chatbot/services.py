"""Build the app's shared parts once: embedder, knowledge base, conversation store, prompts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from backends.base import Backend
from backends.registry import make_backend
from chatbot.access.metering import Answering, answering_backend
from chatbot.access.spending import Limits, Spending
from chatbot.turn.bot import Chatbot
from common.settings import Settings
from chatbot.prompts.library import PromptLibrary, open_prompt_library
from chatbot.routing.routes import default_routes_path, load_routes
from chatbot.routing.router import IntentRouter, router_for_routes
from chatbot.store.conversations import ConversationStore
from chatbot.handoff.queue import HandoffQueue
from chatbot.webhooks.delivery import Dispatcher
from knowledge.embeddings import Embedder, shared_embedder
from knowledge.shipped_vectors import load_shipped
from knowledge.store import KnowledgeBase, make_chroma_client

DEMO_DOCS = Path(__file__).resolve().parent.parent / "knowledge" / "docs"
SEEDED_MARKER = "knowledge/.demo-seeded"


@dataclass
class Services:
    """Long-lived objects shared by every page and conversation in the process."""

    settings: Settings
    embedder: Embedder
    knowledge: KnowledgeBase
    store: ConversationStore
    prompts: PromptLibrary
    router: IntentRouter
    events: Dispatcher
    handoff: HandoffQueue
    # The API backends' spend, in the conversations' Redis; built from the settings unless given.
    spending: Spending = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.spending is None:
            store = self.store
            self.spending = Spending(lambda: store.client, Limits.from_settings(self.settings),
                                     conversation_ttl=store.ttl)

    def answering(self, build: Callable[[], Backend], client_id: str, conversation_id: str = "",
                  set_aside: str = "") -> Answering:
        """Which backend answers `client_id`'s next turn in `conversation_id`: `build()`'s, held to the
        spending limits, or the offline one and why (see chatbot.access.metering.answering_backend).
        Every front end (pages, command line, HTTP API) decides it here."""
        return answering_backend(build, self.offline_backend, self.spending, client_id, conversation_id, set_aside)

    def offline_backend(self) -> Backend:
        """The backend that answers from the knowledge base alone, when the chosen one cannot."""
        return make_backend("offline", self.settings)

    def build_chatbot(self, backend: Backend) -> Chatbot:
        """A Chatbot over the shared parts with the chosen backend (cheap to build)."""
        s = self.settings
        return Chatbot(
            knowledge=self.knowledge, backend=backend, store=self.store, prompts=self.prompts, router=self.router,
            top_k=s.top_k, max_message_chars=s.max_message_chars,
            window_tokens=s.window_tokens, window_messages=s.window_messages,
            temperature=s.temperature, max_tokens=s.max_tokens, events=self.events, handoff=self.handoff,
        )


def build_knowledge(settings: Settings, embedder: Embedder) -> KnowledgeBase:
    """The knowledge base on the embedded store, or on a Chroma server when CHROMA_HOST is set."""
    client = make_chroma_client(
        settings.path("chroma", ".keep").parent, settings.chroma_host, settings.chroma_port, settings.chroma_token
    )
    return KnowledgeBase(client, embedder, settings.path("knowledge", ".keep").parent, fusion=settings.retrieval_fusion,
                         max_file_share=settings.max_file_share)


def seed_demo_docs(settings: Settings, knowledge: KnowledgeBase) -> int:
    """Ingest the shipped demo articles on first run; returns how many files were added."""
    marker = settings.path(SEEDED_MARKER)
    if marker.exists() or not DEMO_DOCS.is_dir() or knowledge.model_change is not None:
        return 0  # a store of another embedding model is rebuilt first (the Knowledge base page offers it)
    results = knowledge.ingest_paths([DEMO_DOCS], vectors=load_shipped(knowledge.embedder))
    marker.write_text("seeded\n")
    return sum(r.status == "added" for r in results)


def build_services(settings: Settings | None = None, seed: bool = True) -> Services:
    """Everything a page or the CLI needs, built once per process."""
    settings = settings or Settings.load()
    embedder = shared_embedder(settings.embedding_model)
    embedder.embed_one("warm up")  # the first call pays one-off costs; not the first customer
    knowledge = build_knowledge(settings, embedder)
    if seed:
        seed_demo_docs(settings, knowledge)
    store = ConversationStore.from_settings(settings)
    # Trained on the shipped intents on first start, then loaded from the data directory.
    router = router_for_routes(load_routes(default_routes_path()), embedder, settings.path("models", ".keep").parent)
    # Webhook events are queued in the conversations' Redis and sent by `python -m chatbot webhook-worker`.
    events = Dispatcher(lambda: store.client)
    store.events = events
    return Services(
        settings=settings, embedder=embedder, knowledge=knowledge, store=store,
        prompts=open_prompt_library(settings.data_dir, embedder), router=router,
        events=events, handoff=HandoffQueue(store, events),
    )
