"""The knowledge base against the embedded store and against a real `chroma run` server.

Every test here runs twice: on a Chroma PersistentClient in a temporary folder, and on
an HttpClient talking to a `chroma run` process on a loopback port. Several knowledge
bases on one store, each with its own index folder, stand for app replicas.
"""

from __future__ import annotations

import threading
import uuid

import pytest

from common.errors import IngestError
from knowledge import ingest
from knowledge.chunking import ChunkSettings, doc_id_for
from knowledge.store import KnowledgeBase, make_chroma_client
from knowledge.types import Document
from tests.chroma_server import chroma_server  # noqa: F401 - a fixture
from tests.test_loaders import minimal_pdf

REFUNDS = b"""---
category: refunds
---
# Refund policy

Refunds are possible within 30 days of delivery. The money goes back to the card you paid with.

## How to ask
Open Orders in the app and tap Request refund.
"""
PASSWORDS = b"""---
category: account
---
# Reset your password

Tap Forgot password on the sign-in screen and follow the emailed link.
"""
THERMOSTAT = b"""---
category: technical
---
# Thermostat wiring

The thermostat needs a C wire for constant power. Without one the display goes blank in the evening.
"""


def long_article(marker: str, sections: int = 12) -> bytes:
    """A markdown article with many short sections, each its own chunk."""
    body = "\n".join(
        f"## Step {n}\nStep {n} of the {marker} procedure: hold the button for {n} seconds and wait for the light."
        for n in range(sections)
    )
    return f"---\ncategory: technical\n---\n# Factory reset\n\n{body}\n".encode()


@pytest.fixture(params=["embedded", "server"])
def replicas(request, tmp_path, embedder):
    """A factory of knowledge bases sharing one vector store (embedded or server), each with its own index."""
    if request.param == "server":
        server = request.getfixturevalue("chroma_server")

        def client():
            return make_chroma_client(host=server.host, port=server.port)
    else:
        def client():
            return make_chroma_client(tmp_path / "chroma")
    collection = f"kb-{uuid.uuid4().hex[:10]}"
    made: list[KnowledgeBase] = []

    def make(replica: str = "a", **kwargs) -> KnowledgeBase:
        kwargs.setdefault("sync_interval", 0)
        kb = KnowledgeBase(client(), kwargs.pop("embedder", embedder), tmp_path / f"index-{replica}",
                           collection=collection, **kwargs)
        made.append(kb)
        return kb

    yield make
    for kb in made:
        kb.close()


def texts(kb: KnowledgeBase, source: str) -> list[str]:
    doc = next(d for d in kb.documents() if d.source == source)
    return [p.text for p in kb.chunks_of(doc.doc_id)]


def test_reingesting_is_idempotent_and_a_changed_file_leaves_no_stale_passage(replicas):
    kb = replicas()
    assert kb.ingest_upload("refunds.md", REFUNDS).status == "added"
    assert kb.ingest_upload("refunds.md", REFUNDS).status == "unchanged"
    assert kb.stats() == {"documents": 1, "chunks": 2, "vectors_stored": 2, "keyword_rows": 2}

    changed = REFUNDS.replace(b"30 days", b"14 days")
    assert kb.ingest_upload("refunds.md", changed).status == "updated"
    assert any("14 days" in t for t in texts(kb, "refunds.md"))
    for mode in ("hybrid", "vector", "keyword"):
        found = " ".join(p.text for p in kb.search("refund within 30 days of delivery", k=5, mode=mode))
        assert "30 days" not in found and "14 days" in found, mode
    assert kb.stats() == {"documents": 1, "chunks": 2, "vectors_stored": 2, "keyword_rows": 2}


def test_delete_removes_the_document_everywhere(replicas):
    kb = replicas()
    kb.ingest_uploads([("refunds.md", REFUNDS), ("passwords.md", PASSWORDS)])
    doc = next(d for d in kb.documents() if d.source == "refunds.md")
    assert kb.delete(doc.doc_id)
    assert not kb.delete(doc.doc_id)
    assert [d.source for d in kb.documents()] == ["passwords.md"]
    assert kb.stats() == {"documents": 1, "chunks": 1, "vectors_stored": 1, "keyword_rows": 1}
    for mode in ("hybrid", "vector", "keyword"):
        assert all(p.source != "refunds.md" for p in kb.search("refund within 30 days", k=5, mode=mode))


def test_hybrid_search_names_its_retrievers_and_filters_by_category_and_source(replicas):
    kb = replicas()
    kb.ingest_uploads([("refunds.md", REFUNDS), ("passwords.md", PASSWORDS), ("thermostat.md", THERMOSTAT)])
    top = kb.search("I forgot my password", k=3)[0]
    assert (top.source, top.title, top.chunk) == ("passwords.md", "Reset your password", 0)
    assert top.category == "account" and top.score > 0
    assert set(top.retrievers) == {"vector", "keyword"}
    assert kb.search("I forgot my password", k=3, mode="vector")[0].retrievers == ["vector"]
    assert {p.source for p in kb.search("I forgot my password", k=5, where={"category": "refunds"})} == {"refunds.md"}
    only = kb.search("password", k=5, where={"source": "thermostat.md"}, mode="hybrid")
    assert {p.source for p in only} == {"thermostat.md"}
    for fusion in ("convex", "rrf"):
        assert kb.search("display blank no c wire", k=1, fusion=fusion)[0].source == "thermostat.md"


def test_keyword_index_survives_a_restart_and_is_rebuilt_from_the_store_when_lost(replicas, tmp_path):
    kb = replicas()
    kb.ingest_uploads([("refunds.md", REFUNDS), ("thermostat.md", THERMOSTAT)])
    kb.close()
    again = replicas()
    assert again.search("C wire constant power", k=1, mode="keyword")[0].source == "thermostat.md"
    again.close()
    for leftover in (tmp_path / "index-a").glob("keywords-*"):
        leftover.unlink()
    rebuilt = replicas()
    assert rebuilt.keywords.count() == 3
    assert rebuilt.search("C wire constant power", k=1, mode="keyword")[0].source == "thermostat.md"


def test_a_second_replica_follows_adds_updates_and_deletes(replicas):
    first = replicas("a")
    first.ingest_upload("refunds.md", REFUNDS)
    second = replicas("b")
    assert [d.source for d in second.documents()] == ["refunds.md"]
    assert second.search("money back on my card", k=1)[0].source == "refunds.md"

    first.ingest_upload("refunds.md", REFUNDS.replace(b"30 days", b"14 days"))
    first.ingest_upload("thermostat.md", THERMOSTAT)
    assert "14 days" in second.search("how many days for a refund", k=1, mode="keyword")[0].text
    assert second.search("c wire", k=1, mode="keyword")[0].source == "thermostat.md"

    first.delete(next(d.doc_id for d in first.documents() if d.source == "thermostat.md"))
    assert [d.source for d in second.documents()] == ["refunds.md"]
    assert all(p.source != "thermostat.md" for p in second.search("c wire", k=5))


def test_reindex_applies_new_chunk_settings_to_every_document(replicas):
    kb = replicas(chunking=ChunkSettings(900, 150))
    article = b"# Long guide\n\n" + b" ".join(
        f"Sentence {n} explains one more detail of pairing the doorbell.".encode() for n in range(40))
    kb.ingest_uploads([("guide.md", article), ("refunds.md", REFUNDS)])
    before = kb.chunk_count()
    results = kb.reindex(ChunkSettings(200, 40))
    assert {r.status for r in results} == {"updated"}
    assert kb.chunk_count() > before and not kb.needs_reindex()
    assert all(len(t) <= 200 for t in texts(kb, "guide.md"))
    assert kb.stats()["vectors_stored"] == kb.chunk_count() == kb.keywords.count()
    assert kb.search("pairing the doorbell", k=1)[0].source == "guide.md"
    # Another replica started without explicit settings adopts the stored ones.
    assert replicas("b").chunking == ChunkSettings(200, 40)


class FailingEmbedder:
    """The real embedder, failing on its `fail_on`-th batch call, as a crash or a dead model server would."""

    def __init__(self, embedder, fail_on: int):
        self.embedder, self.fail_on, self.calls = embedder, fail_on, 0
        self.dimension = embedder.dimension

    def embed(self, texts, batch_size: int = 64):
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("embedding failed halfway")
        return self.embedder.embed(texts, batch_size=batch_size)

    def embed_one(self, text):
        return self.embedder.embed_one(text)


def test_a_failure_halfway_leaves_the_previous_version_whole(replicas, embedder, monkeypatch):
    monkeypatch.setattr(ingest, "EMBED_BATCH", 4)  # several write steps per document
    kb = replicas()
    kb.ingest_upload("reset.md", long_article("old"))
    before = kb.stats()
    flaky = replicas("a", embedder=FailingEmbedder(embedder, fail_on=2), embedding_cache=False)
    with pytest.raises(RuntimeError, match="halfway"):
        flaky.ingest_upload("reset.md", long_article("new"))
    for base in (flaky, kb):
        assert base.stats() == before
        assert all("old procedure" in t for t in texts(base, "reset.md"))
        assert all("new procedure" not in p.text for p in base.search("new procedure step", k=10))


def test_cancel_between_files_and_inside_a_document_keeps_nothing_partial(replicas, monkeypatch):
    monkeypatch.setattr(ingest, "EMBED_BATCH", 4)
    monkeypatch.setattr(ingest, "COMMIT_CHUNKS", 1)  # one document per commit
    kb = replicas()
    stop = threading.Event()
    results = kb.ingest_uploads(
        [("refunds.md", REFUNDS), ("passwords.md", PASSWORDS), ("thermostat.md", THERMOSTAT)],
        progress=lambda number, total, result: stop.set(), cancel=stop,
    )
    assert [r.status for r in results] == ["added", "cancelled", "cancelled"]
    assert [d.source for d in kb.documents()] == ["refunds.md"]

    inside = threading.Event()
    result = kb.ingest_uploads([("reset.md", long_article("cancelled"))], cancel=inside,
                               chunk_progress=lambda count: inside.set())[0]
    assert result.status == "cancelled"
    assert [d.source for d in kb.documents()] == ["refunds.md"]
    assert kb.stats() == {"documents": 1, "chunks": 2, "vectors_stored": 2, "keyword_rows": 2}


def test_bad_files_are_refused_by_name_and_nothing_ingested_is_lost(replicas):
    kb = replicas()
    kb.ingest_upload("refunds.md", REFUNDS)
    results = kb.ingest_uploads([
        ("broken.pdf", b"%PDF-1.4 this is not really a pdf"),
        ("empty.md", b""),
        ("photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR" + bytes(range(256))),
        ("huge.txt", b"a" * (200 * 1024 * 1024)),
        ("faq.csv", b"name,email\nBob,bob@example.com\n"),
        ("guide.pdf", minimal_pdf("Refunds take ten days")),
    ])
    by_name = {r.source: r for r in results}
    assert by_name["guide.pdf"].status == "added"
    reasons = {name: r.error for name, r in by_name.items() if r.status == "error"}
    assert set(reasons) == {"broken.pdf", "empty.md", "photo.txt", "huge.txt", "faq.csv"}
    assert "not a readable PDF" in reasons["broken.pdf"]
    assert "empty" in reasons["empty.md"]
    assert "binary" in reasons["photo.txt"]
    assert "the limit is" in reasons["huge.txt"]
    assert "question column" in reasons["faq.csv"]
    assert sorted(d.source for d in kb.documents()) == ["guide.pdf", "refunds.md"]
    assert kb.search("refund within 30 days", k=1)[0].source == "refunds.md"
    with pytest.raises(IngestError, match="empty.md"):
        kb.ingest_document(Document("empty.md", "Empty", []))


# Run in a child process, so that a crash is a real one: os._exit skips every cleanup.
CHILD = r"""
import json, os, sys
from pathlib import Path
from knowledge import ingest
from knowledge.embeddings import shared_embedder
from knowledge.store import KnowledgeBase, make_chroma_client

spec = json.loads(sys.argv[1])
ingest.EMBED_BATCH = 4
embedder = shared_embedder()


class Dying:
    dimension = embedder.dimension
    calls = 0

    def embed(self, texts, batch_size=64):
        Dying.calls += 1
        if Dying.calls == 2:
            os._exit(9)  # the process dies with the first chunks of the new version written
        return embedder.embed(texts, batch_size=batch_size)

    def embed_one(self, text):
        return embedder.embed_one(text)


def open_kb(index, chosen):
    if spec["host"]:
        client = make_chroma_client(host=spec["host"], port=spec["port"])
    else:
        client = make_chroma_client(Path(spec["path"]))
    return KnowledgeBase(client, chosen, Path(index), collection=spec["collection"], embedding_cache=False)


def report(kb):
    doc = kb.documents()[0]
    return {"stats": kb.stats(), "texts": [p.text for p in kb.chunks_of(doc.doc_id)],
            "found": [p.text for p in kb.search("new procedure step", k=20)]}


if spec["action"] == "ingest":
    open_kb(spec["index"], embedder).ingest_upload("reset.md", spec["data"].encode())
elif spec["action"] == "crash":
    open_kb(spec["index"], Dying()).ingest_upload("reset.md", spec["data"].encode())
else:
    # A replica whose journal knows nothing of the crash: the orphans are still stored, and must not show.
    other = report(open_kb(spec["other_index"], embedder))
    # The crashed replica's next start sweeps what its journal recorded.
    swept = report(open_kb(spec["index"], embedder))
    print(json.dumps({"other": other, "swept": swept}))
"""


@pytest.mark.parametrize("store", ["embedded", "server"])
def test_a_crash_halfway_leaves_no_half_document_and_the_next_start_cleans_up(store, request, tmp_path):
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    spec = {"host": "", "port": 0, "path": str(tmp_path / "chroma"), "collection": f"kb-{uuid.uuid4().hex[:10]}",
            "index": str(tmp_path / "index-a"), "other_index": str(tmp_path / "index-b")}
    if store == "server":
        server = request.getfixturevalue("chroma_server")
        spec.update(host=server.host, port=server.port)

    def child(action: str, data: bytes = b"") -> subprocess.CompletedProcess:
        args = json.dumps({**spec, "action": action, "data": data.decode()})
        return subprocess.run([sys.executable, "-c", CHILD, args], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)

    assert child("ingest", long_article("old")).returncode == 0
    crashed = child("crash", long_article("new"))
    assert crashed.returncode == 9, crashed.stderr
    done = child("report")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    other, swept = seen["other"], seen["swept"]
    assert other["stats"]["chunks"] == 12 and other["stats"]["vectors_stored"] > 12  # orphans are there...
    for view in (other, swept):  # ...yet nowhere visible
        assert len(view["texts"]) == 12 and all("old procedure" in t for t in view["texts"])
        assert view["found"] and all("new procedure" not in t for t in view["found"])
    assert swept["stats"] == {"documents": 1, "chunks": 12, "vectors_stored": 12, "keyword_rows": 12}


def test_the_same_file_twice_in_one_upload_keeps_the_later_one(replicas):
    kb = replicas()
    results = kb.ingest_uploads([("refunds.md", REFUNDS), ("refunds.md", REFUNDS.replace(b"30 days", b"14 days"))])
    assert [r.status for r in results] == ["added", "updated"]
    assert any("14 days" in t for t in texts(kb, "refunds.md"))
    assert kb.stats() == {"documents": 1, "chunks": 2, "vectors_stored": 2, "keyword_rows": 2}


def test_chunks_stored_before_the_registry_existed_stay_searchable_and_are_replaced_cleanly(replicas, embedder):
    kb = replicas()  # creates the collections; then chunks are written the way older builds wrote them
    collection = kb._chunks
    kb.close()
    old = ["Refunds are possible within 30 days of delivery.", "Open Orders in the app and tap Request refund."]
    doc_id = doc_id_for("refunds.md")
    collection.add(ids=[f"{doc_id}:0", f"{doc_id}:1"], embeddings=embedder.embed(old), documents=old,
                   metadatas=[{"doc_id": doc_id, "source": "refunds.md", "title": "Refund policy", "heading": "",
                               "chunk": n, "category": "refunds"} for n in range(2)])
    kb._registry._col.delete(where={"kind": "state"})  # as if no registry had ever been written
    adopted = replicas("b")
    assert [(d.source, d.chunks) for d in adopted.documents()] == [("refunds.md", 2)]
    assert adopted.search("refund within 30 days", k=1, mode="keyword")[0].source == "refunds.md"
    assert adopted.search("money back", k=1)[0].source == "refunds.md"
    assert adopted.ingest_upload("refunds.md", REFUNDS).status == "updated"
    assert adopted.stats() == {"documents": 1, "chunks": 2, "vectors_stored": 2, "keyword_rows": 2}
    assert any("money goes back to the card" in p.text for p in adopted.chunks_of(doc_id))
