"""A knowledge base built with another embedding model, on real Chroma: found on start, searched by
keywords meanwhile (the chat says so), refused for writes, rebuilt with the running model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import chromadb
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from chatbot.turn.bot import Chatbot
from common.errors import EmbeddingModelChanged
from knowledge.jobs import IngestionJob
from knowledge.reembed import DIMENSION_KEY, MODEL_KEY
from knowledge.store import COLLECTION
from tests.conftest import app_environment, make_kb
from tests.fakes import FakeBackend
from tests.test_knowledge_store import PASSWORDS, REFUNDS

ROOT = Path(__file__).resolve().parent.parent


class OtherModel:
    """A 768-dimension model: the real model's vectors through a fixed random projection, so that the
    store it builds is searchable by itself (what a base built with a bigger model is)."""

    dimension = 768
    model_id = "all-mpnet-base-v2|fold1"

    def __init__(self, embedder, dimension: int = 768, model_id: str = "all-mpnet-base-v2|fold1"):
        self.embedder, self.dimension, self.model_id = embedder, dimension, model_id
        self._projection = np.random.default_rng(7).standard_normal((embedder.dimension, dimension)).astype(np.float32)

    def embed(self, texts, batch_size: int = 64):
        out = self.embedder.embed(list(texts), batch_size=batch_size) @ self._projection
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def embed_one(self, text):
        return self.embed([text])[0]


def built_with(path: Path, model) -> None:
    """A knowledge base of two articles built (and closed) with `model`."""
    kb = make_kb(path, model)
    try:
        results = kb.ingest_uploads([("refunds.md", REFUNDS), ("passwords.md", PASSWORDS)])
        assert [r.status for r in results] == ["added", "added"]
    finally:
        kb.close()


def recorded(path: Path) -> dict:
    client = chromadb.PersistentClient(str(path / "chroma"), settings=chromadb.Settings(anonymized_telemetry=False))
    return dict(client.get_collection(COLLECTION).metadata or {})


@pytest.fixture
def other_dimension_kb(tmp_path, embedder):
    built_with(tmp_path, OtherModel(embedder))
    kb = make_kb(tmp_path, embedder)
    yield kb
    kb.close()


def test_a_base_of_another_dimension_is_found_on_start(other_dimension_kb, embedder):
    change = other_dimension_kb.model_change
    assert change is not None
    assert (change.recorded_model, change.recorded_dimension) == ("all-mpnet-base-v2|fold1", 768)
    assert (change.current_model, change.current_dimension) == (embedder.model_id, 384)
    assert "rebuil" in change.message.lower()


def test_meanwhile_search_answers_from_keywords_and_says_why(other_dimension_kb):
    passages = other_dimension_kb.search("how long does a refund take", k=3)
    assert passages and passages[0].source == "refunds.md" and passages[0].retrievers == ["keyword"]
    assert "built with the embedding model all-mpnet-base-v2" in other_dimension_kb.degraded
    with pytest.raises(EmbeddingModelChanged):  # a typed error, never chromadb's InvalidArgumentError
        other_dimension_kb.search("refund", mode="vector")


def test_meanwhile_writes_are_refused_by_a_typed_error_and_deletes_still_work(other_dimension_kb):
    with pytest.raises(EmbeddingModelChanged):
        other_dimension_kb.ingest_uploads([("extra.md", b"# Extra\n\nSome extra text about parcels.\n")])
    with pytest.raises(EmbeddingModelChanged):
        other_dimension_kb.reindex()
    passwords = next(d for d in other_dimension_kb.documents() if d.source == "passwords.md")
    assert other_dimension_kb.delete(passwords.doc_id)
    assert [d.source for d in other_dimension_kb.documents()] == ["refunds.md"]


def test_a_base_of_another_model_id_with_the_same_dimension_is_found(tmp_path, embedder):
    built_with(tmp_path, OtherModel(embedder, dimension=384, model_id="paraphrase-MiniLM-L6-v2|fold1"))
    kb = make_kb(tmp_path, embedder)
    try:
        assert kb.model_change is not None and kb.model_change.recorded_model == "paraphrase-MiniLM-L6-v2|fold1"
    finally:
        kb.close()


def test_a_base_that_records_no_model_is_checked_by_its_vectors(tmp_path, embedder):
    for folder, model in (("other", OtherModel(embedder, dimension=384)), ("same", embedder)):
        built_with(tmp_path / folder, model)
        client = chromadb.PersistentClient(str(tmp_path / folder / "chroma"),
                                           settings=chromadb.Settings(anonymized_telemetry=False))
        client.get_collection(COLLECTION).modify(metadata={"made": "before models were recorded"})
        client.close()
    other, same = make_kb(tmp_path / "other", embedder), make_kb(tmp_path / "same", embedder)
    try:
        assert other.model_change is not None and other.model_change.recorded_model == "an unrecorded model"
        assert same.model_change is None
    finally:
        other.close(), same.close()
    assert recorded(tmp_path / "same")[MODEL_KEY] == embedder.model_id  # recorded from now on
    assert MODEL_KEY not in recorded(tmp_path / "other")


def test_a_rebuild_re_embeds_every_document_with_the_running_model(other_dimension_kb, tmp_path, embedder):
    job = IngestionJob(other_dimension_kb, rebuild=True).start()
    assert job.wait(120) and not job.error
    assert sorted((f.name, f.state) for f in job.files) == [("passwords.md", "added"), ("refunds.md", "added")]
    assert other_dimension_kb.model_change is None and not other_dimension_kb.rebuild_unfinished
    hits = other_dimension_kb.search("I forgot my password", k=2, mode="vector")
    assert hits[0].source == "passwords.md"
    assert recorded(tmp_path)[DIMENSION_KEY] == 384
    other_dimension_kb.close()
    reopened = make_kb(tmp_path, embedder)
    try:
        assert reopened.model_change is None and len(reopened.documents()) == 2
    finally:
        reopened.close()


def test_a_cancelled_rebuild_goes_on_at_the_next_try(other_dimension_kb):
    sources = other_dimension_kb.rebuild_sources()
    results = other_dimension_kb.ingest(sources[:1])  # one document, then the tab closed
    assert not other_dimension_kb.finish_rebuild(results + [type(results[0])("passwords.md", "cancelled")])
    assert other_dimension_kb.rebuild_unfinished and len(other_dimension_kb.documents()) == 1
    job = IngestionJob(other_dimension_kb, rebuild=True)
    assert [f.name for f in job.files] == [s for s, _ in sources[1:]]  # only what is left
    assert job.start().wait(120) and not job.error
    assert not other_dimension_kb.rebuild_unfinished and len(other_dimension_kb.documents()) == 2


def test_a_chat_turn_meanwhile_answers_from_keyword_passages(other_dimension_kb, store):
    bot = Chatbot(knowledge=other_dimension_kb, backend=FakeBackend(["Refunds take ten days [1]."]), store=store)
    reply = bot.ask("s", "how long does a refund take")
    assert reply.passages and reply.passages[0].source == "refunds.md"
    assert "embedding model" in other_dimension_kb.degraded


def test_the_pages_say_so_offer_a_rebuild_and_show_no_raw_error(tmp_path, embedder):
    built_with(tmp_path / "data", OtherModel(embedder))  # the app's Chroma folder: <data>/chroma
    (tmp_path / "data" / "knowledge").mkdir()
    (tmp_path / "data" / "knowledge" / ".demo-seeded").write_text("seeded\n")  # as in a data directory in use
    with app_environment(tmp_path / "data"):
        knowledge = AppTest.from_file(str(ROOT / "views" / "knowledge_base.py"), default_timeout=120)
        knowledge.session_state["admin_since"] = time.time()
        knowledge.run()
        assert not knowledge.exception
        warnings = " ".join(w.value for w in knowledge.warning)
        assert "built with the embedding model all-mpnet-base-v2" in warnings.replace("\\", "")
        knowledge.selectbox(key="kb_mode").set_value("vector")
        knowledge.text_input(key="kb_query").input("refund").run()
        assert not knowledge.exception
        assert any("Vector search is off" in e.value for e in knowledge.error)
        assert all("InvalidArgumentError" not in e.value for e in knowledge.error)
        chat = AppTest.from_file(str(ROOT / "views" / "chat.py"), default_timeout=120).run()
        assert not chat.exception
        assert any(w.value.startswith("Search is degraded") for w in chat.sidebar.warning)
        knowledge.button(key="kb_rebuild").click().run()
        knowledge.session_state["kb_job"].wait(120)
        knowledge.run().run()
        assert not knowledge.exception and not knowledge.session_state["kb_job"].error
        assert not any("built with the embedding model" in w.value for w in knowledge.warning)
        assert any(s.value.startswith("2 documents") for s in knowledge.subheader)


def test_the_command_line_says_so_and_rebuilds(tmp_path, embedder):
    import os
    import subprocess
    import sys

    built_with(tmp_path, OtherModel(embedder))
    (tmp_path / "knowledge").mkdir()
    (tmp_path / "knowledge" / ".demo-seeded").write_text("seeded\n")
    env = {**os.environ, "CHATBOT_DATA_DIR": str(tmp_path), "CHATBOT_BACKEND": "offline"}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "chatbot", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)

    found = cli("search", "how long does a refund take", "--mode", "vector")
    assert found.returncode != 0 and "InvalidArgumentError" not in found.stderr + found.stdout
    assert "built with the embedding model all-mpnet-base-v2" in found.stderr + found.stdout
    rebuilt = cli("rebuild-knowledge")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "2 re-embedded, 0 failed" in rebuilt.stdout
    again = cli("search", "I forgot my password", "--mode", "vector", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)[0]["source"] == "passwords.md"
