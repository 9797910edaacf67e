"""The knowledge base on a real embedded Chroma: idempotent ingest, updates, deletes, search."""

from __future__ import annotations

from tests.conftest import make_kb

REFUNDS = b"""---
category: refunds
---
# Refund policy

Refunds are possible within 30 days of delivery.

## How to ask
Open Orders in the app and tap Request refund.
"""
PASSWORDS = b"""---
category: account
---
# Reset your password

Tap Forgot password on the sign-in screen and follow the emailed link.
"""


def test_same_file_twice_adds_nothing(kb):
    first = kb.ingest_upload("refunds.md", REFUNDS)
    second = kb.ingest_upload("refunds.md", REFUNDS)
    assert first.status == "added" and first.chunks == 2
    assert second.status == "unchanged"
    assert kb.chunk_count() == 2
    assert kb.keywords.count() == 2
    assert len(kb.documents()) == 1


def test_changed_file_replaces_its_chunks(kb):
    kb.ingest_upload("refunds.md", REFUNDS)
    changed = REFUNDS.replace(b"30 days", b"14 days")
    result = kb.ingest_upload("refunds.md", changed)
    assert result.status == "updated"
    texts = [p.text for p in kb.chunks_of(kb.documents()[0].doc_id)]
    assert any("14 days" in t for t in texts) and not any("30 days" in t for t in texts)
    assert kb.chunk_count() == 2


def test_search_finds_the_right_document_with_citation_fields(kb):
    kb.ingest_upload("refunds.md", REFUNDS)
    kb.ingest_upload("passwords.md", PASSWORDS)
    hits = kb.search("I forgot my password", k=2)
    assert hits[0].source == "passwords.md"
    assert hits[0].title == "Reset your password"
    assert hits[0].chunk == 0 and hits[0].score > 0
    assert set(hits[0].retrievers) == {"vector", "keyword"}
    only_refunds = kb.search("I forgot my password", k=2, where={"category": "refunds"})
    assert {p.source for p in only_refunds} == {"refunds.md"}


def test_delete_removes_chunks_from_both_indexes(kb):
    kb.ingest_upload("refunds.md", REFUNDS)
    kb.ingest_upload("passwords.md", PASSWORDS)
    doc = next(d for d in kb.documents() if d.source == "refunds.md")
    assert kb.delete(doc.doc_id)
    assert not kb.delete(doc.doc_id)
    assert kb.chunk_count() == 1 and kb.keywords.count() == 1
    assert all(p.source != "refunds.md" for p in kb.search("refund within 30 days", k=5))


def test_bad_upload_is_reported_and_nothing_is_lost(kb):
    kb.ingest_upload("refunds.md", REFUNDS)
    result = kb.ingest_upload("refunds.md", b"")
    assert result.status == "error" and "empty" in result.error
    assert kb.chunk_count() == 2


def test_store_survives_a_restart(tmp_path, embedder):
    first = make_kb(tmp_path, embedder)
    first.ingest_upload("refunds.md", REFUNDS)
    first.close()
    again = make_kb(tmp_path, embedder)
    assert again.chunk_count() == 2
    assert again.ingest_upload("refunds.md", REFUNDS).status == "unchanged"
    assert again.search("money back", k=1)[0].source == "refunds.md"
    again.close()
