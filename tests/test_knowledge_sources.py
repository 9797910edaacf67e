"""Documents are named by where they came from; one bad or oddly named file never fails the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge import ingest
from knowledge.jobs import IngestionJob
from tests.test_knowledge_store import PASSWORDS, REFUNDS
from tests.test_loaders_formats import AES_PERMISSIONS_ONLY_PDF

BASIC = ("# Cancelling a Basic plan order\n\nBasic plan orders can be cancelled only before they ship; "
         "after that, return the device within 30 days.\n")
PLUS = ("# Cancelling Nimbus Plus\n\nNimbus Plus can be cancelled any time under Account > Subscription; "
        "the refund is prorated to the day.\n")


@pytest.fixture
def folders(tmp_path) -> Path:
    docs = tmp_path / "docs"
    for plan, text in (("basic", BASIC), ("plus", PLUS)):
        (docs / plan).mkdir(parents=True)
        (docs / plan / "cancellation.md").write_text(text)
    return docs


def test_files_of_one_name_in_different_folders_are_two_documents(kb, folders):
    results = kb.ingest_paths([folders])
    assert [(r.source, r.status, r.chunks) for r in results] == [
        ("basic/cancellation.md", "added", 1), ("plus/cancellation.md", "added", 1)]
    assert [(d.source, d.title) for d in kb.documents()] == [
        ("basic/cancellation.md", "Cancelling a Basic plan order"), ("plus/cancellation.md", "Cancelling Nimbus Plus")]
    assert kb.search("Can a Basic plan order be cancelled after it ships?", k=1)[0].source == "basic/cancellation.md"
    # Ingesting the same folder again is idempotent.
    assert [r.status for r in kb.ingest_paths([folders])] == ["unchanged", "unchanged"]
    assert kb.stats()["documents"] == 2


def test_two_files_given_that_would_share_a_name_are_refused_by_name(kb, folders):
    basic, plus = folders / "basic" / "cancellation.md", folders / "plus" / "cancellation.md"
    first, second = kb.ingest_paths([basic, plus])
    assert (first.source, first.status) == ("cancellation.md", "added")
    assert (second.source, second.status) == ("cancellation.md", "error")
    assert second.error == (f"{plus} and {basic} would both be stored as cancellation.md; ingest the folder "
                            "that holds both, so each keeps its folder in its name")
    assert [d.title for d in kb.documents()] == ["Cancelling a Basic plan order"]


def test_a_file_reached_twice_is_ingested_once(kb, folders):
    results = kb.ingest_paths([folders, folders / "plus" / "cancellation.md", folders / "plus"])
    assert [(r.source, r.status) for r in results] == [
        ("basic/cancellation.md", "added"), ("plus/cancellation.md", "added")]


def test_an_unexpected_failure_reading_one_file_fails_only_that_file(kb, monkeypatch):
    real = ingest.load_bytes

    def load(name, data):
        if name == "passwords.md":
            raise RuntimeError("the parser fell over")
        return real(name, data)

    monkeypatch.setattr(ingest, "load_bytes", load)
    results = kb.ingest_uploads([("refunds.md", REFUNDS), ("passwords.md", PASSWORDS), ("x.md", b"# X\n\nText.\n")])
    assert [(r.source, r.status, r.error) for r in results] == [
        ("refunds.md", "added", ""),
        ("passwords.md", "error", "could not be read (RuntimeError: the parser fell over)"),
        ("x.md", "added", ""),
    ]


def test_an_upload_with_an_encrypted_pdf_ingests_every_file(kb):
    uploads = [("refunds.md", b"# Refunds\n\nRefunds take 5 to 7 working days.\n"),
               ("refund-policy.pdf", AES_PERMISSIONS_ONLY_PDF),
               ("shipping.md", b"# Shipping\n\nParcels ship within 2 days.\n")]
    job = IngestionJob(kb, uploads=uploads).start()
    assert job.wait(120) and not job.error
    assert [(f.name, f.state, f.error) for f in job.files] == [
        ("refunds.md", "added", ""), ("refund-policy.pdf", "added", ""), ("shipping.md", "added", "")]
    assert kb.search("when does the refund reach my card", k=1)[0].source == "refund-policy.pdf"


def test_hostile_upload_names_are_stored_and_reported_clean(kb):
    uploads = [("../../refunds.md", REFUNDS), ("/etc/pass\x00words.md", PASSWORDS),
               ("C:\\tmp\\\x1b[2Jnotes.txt", b"Office hours are 9 to 5."), ("..", b"x"),
               ("bad\udcffname.md", b"# Odd\n\nA name a file system could not decode.\n")]
    job = IngestionJob(kb, uploads=uploads).start()
    assert job.wait(120) and not job.error
    assert [(f.name, f.state) for f in job.files] == [
        ("refunds.md", "added"), ("etc/passwords.md", "added"), ("tmp/[2Jnotes.txt", "added"),
        ("unnamed", "error"), ("bad\ufffdname.md", "added")]
    assert job.files[3].error.startswith("unsupported file type (none)")
    assert sorted(d.source for d in kb.documents()) == [
        "bad\ufffdname.md", "etc/passwords.md", "refunds.md", "tmp/[2Jnotes.txt"]
    assert kb.search("office hours", k=1)[0].source == "tmp/[2Jnotes.txt"
    # The same upload again: every file is recognised as the one already stored.
    again = kb.ingest_uploads([("../../refunds.md", REFUNDS), ("/etc/pass\x00words.md", PASSWORDS)])
    assert [(r.source, r.status) for r in again] == [("refunds.md", "unchanged"), ("etc/passwords.md", "unchanged")]
