"""Configuration picks the store: CHROMA_HOST (port, token) for a Chroma server, else the embedded one."""

from __future__ import annotations

import pytest

from common.settings import Settings
from common.errors import ConfigurationError
from chatbot.services import build_knowledge
from knowledge.store import make_chroma_client
from tests.chroma_server import TokenGate, chroma_server, free_port  # noqa: F401 - chroma_server is a fixture

@pytest.fixture
def server(request):
    return request.getfixturevalue("chroma_server")


GUIDE = b"# Pair the doorbell\n\nHold the button for five seconds until the ring flashes blue.\n"


def test_settings_with_chroma_host_put_the_knowledge_base_on_the_server(server, tmp_path, embedder):
    settings = Settings.load(secrets={}, data_dir=tmp_path / "data", chroma_host=server.host,
                             chroma_port=server.port)
    kb = build_knowledge(settings, embedder)
    try:
        kb.ingest_upload("doorbell.md", GUIDE)
        assert kb.search("doorbell ring blinking blue", k=1)[0].source == "doorbell.md"
        assert not (tmp_path / "data" / "chroma" / "chroma.sqlite3").exists()  # nothing stored locally
        server_side = make_chroma_client(host=f"http://{server.host}:{server.port}")
        assert "support-knowledge" in {c.name for c in server_side.list_collections()}
    finally:
        kb.close()


def test_an_unreachable_server_names_the_settings_to_check():
    port = free_port()
    with pytest.raises(ConfigurationError, match="CHROMA_HOST and CHROMA_PORT") as err:
        make_chroma_client(host="127.0.0.1", port=port)
    assert f"127.0.0.1:{port}" in str(err.value)


def test_the_token_reaches_a_gated_server_and_a_wrong_one_is_named(server):
    gate = TokenGate(server.port, token="s3cret")
    try:
        client = make_chroma_client(host="127.0.0.1", port=gate.port, token="s3cret")
        assert client.heartbeat() and gate.forwarded > 0
        for wrong in ("", "guess"):
            with pytest.raises(ConfigurationError, match="CHROMA_TOKEN"):
                make_chroma_client(host="127.0.0.1", port=gate.port, token=wrong)
        assert gate.refused >= 2
    finally:
        gate.stop()


def test_with_the_server_gone_search_falls_back_to_keywords_and_listing_says_why(tmp_path, embedder):
    from common.errors import VectorStoreUnavailable
    from knowledge.store import KnowledgeBase
    from tests.chroma_server import ChromaServer

    own = ChromaServer(tmp_path / "server")
    kb = KnowledgeBase(make_chroma_client(host=own.host, port=own.port), embedder, tmp_path / "index",
                       sync_interval=0)
    try:
        kb.ingest_upload("doorbell.md", GUIDE)
        own.stop()
        found = kb.search("doorbell ring flashes blue", k=2)
        assert [(p.source, p.retrievers) for p in found] == [("doorbell.md", ["keyword"])]
        assert "CHROMA_HOST" in kb.degraded
        with pytest.raises(VectorStoreUnavailable):
            kb.search("doorbell", k=2, mode="vector")
        with pytest.raises(VectorStoreUnavailable, match="cannot be reached"):
            kb.documents()
    finally:
        own.stop()
        kb.close()
