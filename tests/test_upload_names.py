"""Uploaded file names with a NUL byte, control characters, folders or a direction override: each file
is cleaned or refused by name, and never fails the rest of its batch (the ingestion API, an
upload job, and the Knowledge base page through AppTest; tests/test_e2e_upload_names.py does it in
a real browser)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from knowledge.jobs import IngestionJob
from tests.conftest import app_environment

ROOT = Path(__file__).resolve().parent.parent
GOOD = ("gift-cards.md", b"# Gift cards\n\nA Nimbus gift card never expires and pays for any device or plan.\n")
ODD = b"# Loyalty points\n\nLoyalty points are earned on every order and expire after two years.\n"


@pytest.mark.parametrize("raw, stored", [
    ("loyalty\x00points.md", "loyaltypoints.md"),  # a NUL byte
    ("loyalty\x07\x1b[31mpoints.md", "loyalty[31mpoints.md"),  # BEL and an escape sequence's ESC
    ("loyalty\u202edm.stniop", "loyaltydm.stniop"),  # a right-to-left override hiding the real extension
    ("loyalty\u200bpoints\ufeff.md", "loyaltypoints.md"),  # zero-width characters
    ("../../etc/loyalty-points.md", "etc/loyalty-points.md"),  # a path climbing out
    ("C:\\Users\\ana\\loyalty-points.md", "Users/ana/loyalty-points.md"),  # a Windows path
])
def test_each_kind_of_odd_name_is_cleaned_or_refused_by_name_and_the_batch_goes_on(kb, raw, stored):
    results = kb.ingest_uploads([(raw, ODD), GOOD])
    assert [r.source for r in results] == [stored, "gift-cards.md"]
    assert results[1].status == "added"
    odd = results[0]
    assert odd.status == "added" or (odd.status == "error" and odd.error), odd
    assert {d.source for d in kb.documents()} == {r.source for r in results if r.status == "added"}


def test_a_name_of_nothing_but_control_characters_is_refused_by_its_clean_name(kb):
    results = kb.ingest_uploads([("\x00\x01\x02", ODD), GOOD])
    assert (results[0].source, results[0].status) == ("unnamed", "error")
    assert "unsupported file type" in results[0].error and results[1].status == "added"


def test_a_name_that_only_becomes_another_files_once_cleaned_is_refused_not_merged(kb):
    results = kb.ingest_uploads([("notes.md", ODD), ("notes\x00.md", GOOD[1])])
    assert [(r.source, r.status) for r in results] == [("notes.md", "added"), ("notes.md", "error")]
    assert "same name as another file of this upload" in results[1].error
    assert [p.text for p in kb.chunks_of(kb.documents()[0].doc_id)][0].startswith("Loyalty points")


def test_an_upload_job_names_each_file_and_finishes_the_batch(kb):
    job = IngestionJob(kb, uploads=[("loyalty\x00points.md", ODD), ("notes\x1b.md", ODD), ("notes.md", ODD),
                                    GOOD]).start()
    assert job.wait(120) and not job.error
    assert [(f.name, f.state) for f in job.files] == [
        ("loyaltypoints.md", "added"), ("notes.md", "held"), ("notes.md", "error"), ("gift-cards.md", "added")]


def test_the_knowledge_page_takes_a_nul_byte_name_beside_a_good_file(tmp_path):
    data = tmp_path / "data"
    (data / "knowledge").mkdir(parents=True)
    (data / "knowledge" / ".demo-seeded").write_text("seeded\n")
    with app_environment(data):
        at = AppTest.from_file(str(ROOT / "views" / "knowledge_base.py"), default_timeout=120)
        at.session_state["admin_since"] = time.time()
        at.run()
        at.file_uploader(key="kb_upload").set_value([
            ("loyalty\x00\u202epoints.md", ODD, "text/markdown"), ("gift-cards.md", GOOD[1], "text/markdown"),
            ("photo.exe", b"MZ\x90\x00", "application/octet-stream")])
        at.button(key="kb_ingest").click()
        at.run()
        assert not at.exception, at.exception
        at.session_state["kb_job"].wait(120)
        at.run().run()
        assert not at.exception
        shown = " ".join(e.value for kind in (at.success, at.error, at.warning) for e in kind)
        assert "**gift-cards.md**: 1 chunk added" in shown and "**loyaltypoints.md**: 1 chunk added" in shown
        assert "**photo.exe**: unsupported file type .exe" in shown
