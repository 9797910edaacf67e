"""The knowledge page through AppTest: upload with per-file results, list, chunks, delete, re-index, search."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import app_environment

from tests.test_knowledge_store import PASSWORDS, REFUNDS

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    """A fresh data directory whose demo articles count as seeded, so the page starts empty."""
    data = tmp_path_factory.mktemp("kb-page-data")
    (data / "knowledge").mkdir()
    (data / "knowledge" / ".demo-seeded").write_text("seeded\n")
    with app_environment(data):
        yield data


def page() -> AppTest:
    """The page as an admin (what an agent sees is in test_roles_pages.py)."""
    at = AppTest.from_file(str(ROOT / "views" / "knowledge_base.py"), default_timeout=TIMEOUT)
    at.session_state["admin_since"] = time.time()
    return at.run()


def finish_job(at: AppTest, limit: float = 120) -> AppTest:
    """Rerun the page, as its timer does, until the background ingestion has ended."""
    job = at.session_state["kb_job"]
    job.wait(limit)
    return at.run().run()


def texts(at: AppTest) -> str:
    return " ".join(e.value for kind in (at.success, at.error, at.warning, at.markdown) for e in kind)


def test_upload_reports_each_file_and_lists_the_documents(app_env):
    at = page()
    assert not at.exception
    assert at.subheader[1].value.startswith("0 documents")
    at.file_uploader(key="kb_upload").set_value([
        ("refunds.md", REFUNDS, "text/markdown"),
        ("passwords.md", PASSWORDS, "text/markdown"),
        ("broken.pdf", b"%PDF-1.4 not really", "application/pdf"),
        ("faq.csv", b"name,email\nBob,bob@example.com\n", "text/csv"),
    ])
    at.button(key="kb_ingest").click()
    at = finish_job(at.run())
    assert not at.exception
    shown = texts(at)
    assert "**refunds.md**: 2 chunks added" in shown and "**passwords.md**: 1 chunk added" in shown
    assert "**broken.pdf**: is not a readable PDF" in shown
    assert "**faq.csv**: needs a question column" in shown
    assert any(s.value.startswith("2 documents · 3 chunks") for s in at.subheader)
    listed = at.dataframe[0].value
    assert sorted(listed["source"]) == ["passwords.md", "refunds.md"] and sorted(listed["chunks"]) == [1, 2]


def test_same_files_again_are_skipped_as_unchanged(app_env):
    at = page()
    at.file_uploader(key="kb_upload").set_value([("refunds.md", REFUNDS, "text/markdown")])
    at.button(key="kb_ingest").click()
    at = finish_job(at.run())
    assert "**refunds.md**: unchanged, skipped (2 chunks already stored)" in texts(at)


def test_search_shows_ranked_passages_with_scores_and_retrievers(app_env):
    at = page()
    at.text_input(key="kb_query").input("I forgot my password").run()
    assert not at.exception
    first = next(m.value for m in at.markdown if m.value.startswith("**1. "))
    assert "Reset your password" in first and "score" in first and "found by vector, keyword" in first
    at.selectbox(key="kb_mode").select("keyword").run()
    first = next(m.value for m in at.markdown if m.value.startswith("**1. "))
    assert first.endswith("found by keyword")
    at.selectbox(key="kb_source").select("refunds.md").run()
    assert any("Nothing found" in i.value for i in at.info)  # no keyword of the query is in that file
    at.selectbox(key="kb_mode").select("hybrid").run()
    results = [m.value for m in at.markdown if re.match(r"\*\*\d+\. ", m.value)]
    assert results and all("Refund policy" in r for r in results)


def test_chunks_reindex_and_delete(app_env):
    at = page()
    labels = at.selectbox(key="kb_doc").options
    at.selectbox(key="kb_doc").select_index(next(i for i, label in enumerate(labels) if "refunds.md" in label)).run()
    assert "Step" not in texts(at)
    at.number_input(key="kb_chunk_size").set_value(120).run()
    at.number_input(key="kb_chunk_overlap").set_value(20).run()
    at.button(key="kb_reindex").click().run()
    at = finish_job(at)
    assert not at.exception
    assert "replaced" in texts(at)
    services_kb = at.session_state["kb_job"].kb
    assert services_kb.chunking.size == 120 and not services_kb.needs_reindex()
    assert all(len(p.text) <= 120 for d in services_kb.documents() for p in services_kb.chunks_of(d.doc_id))
    doc_count = len(services_kb.documents())
    at.button(key="kb_delete").click().run()
    assert any("for good?" in w.value for w in at.warning)  # asks first
    at.button(key="kb_delete_cancel").click().run()
    assert len(services_kb.documents()) == doc_count
    at.button(key="kb_delete").click().run()
    at.button(key="kb_delete_confirm").click().run()
    assert not at.exception
    assert len(services_kb.documents()) == doc_count - 1
    assert any(s.value.startswith("1 document · ") for s in at.subheader) and doc_count == 2
    assert [d.source for d in services_kb.documents()] == ["passwords.md"]


def test_names_from_uploads_are_shown_as_text_never_as_markup(app_env):
    at = page()
    at.file_uploader(key="kb_upload").set_value([
        ("../../**Bold** [x](javascript:alert(1)).md", b"# Odd name\n\nA file with an odd name.\n", "text/markdown"),
        ("<img src=x onerror=alert(1)>.txt", b"\x89PNG\r\n\x1a\n\x00\x00", "text/plain"),
    ])
    at.button(key="kb_ingest").click()
    at = finish_job(at.run())
    assert not at.exception
    shown = texts(at)
    assert "**\\*\\*Bold\\*\\* \\[x\\](javascript\\:alert(1)).md**: 1 chunk added" in shown
    assert "**\\<img src=x onerror=alert(1)\\>.txt**: looks like a binary file, not text" in shown
    assert "**Bold** [x](javascript:alert(1)).md" in list(at.dataframe[0].value["source"])


def test_literal_text_escapes_what_markdown_would_read_as_markup():
    from ui.knowledge_jobs import literal

    assert literal("refunds.md") == "refunds.md"
    assert literal("a_b *c* `d` [e](f) <g> $h$ :red[i] ~j~ |k| #l &amp;\nm") == \
        "a\\_b \\*c\\* \\`d\\` \\[e\\](f) \\<g\\> \\$h\\$ \\:red\\[i\\] \\~j\\~ \\|k\\| \\#l \\&amp; m"


def test_a_very_large_upload_is_announced_and_waits_for_confirmation(app_env):
    at = page()
    big = ("The hub keeps a local copy of every rule and syncs it when the network is back. " * 20000).encode()
    at.file_uploader(key="kb_upload").set_value([("manual.txt", big, "text/plain")])
    at.button(key="kb_ingest").click()
    at = at.run()
    assert not at.exception
    warning = " ".join(w.value for w in at.warning).replace("\\", "")  # markdown escapes
    assert re.search(r"manual\.txt is 1\.6 MB, about [\d,]+ chunks\.", warning)
    assert re.search(r"In all about [\d,]+ chunks from 1 file: embedding them takes about \d+ (s|min)", warning)
    assert "kb_job" not in at.session_state or not at.session_state["kb_job"].running
    assert at.button(key="kb_ingest_large") is not None
    at.button(key="kb_drop_large").click()
    at = at.run()
    assert "kb_pending" not in at.session_state and not any("manual.txt" in w.value for w in at.warning)


def test_many_files_that_make_a_large_upload_together_are_announced_too(app_env):
    at = page()
    # Twelve files of 300 chunks each: none is large alone, together they are 3,600 chunks.
    from ui.services import get_services

    chunking = get_services().knowledge.chunking  # the page's own
    article = b"Each camera keeps clips for 30 days on Nimbus Plus. " * (300 * (chunking.size - chunking.overlap) // 52)
    at.file_uploader(key="kb_upload").set_value([(f"camera-{n}.txt", article, "text/plain") for n in range(12)])
    at.button(key="kb_ingest").click()
    at = at.run()
    assert not at.exception
    warning = " ".join(w.value for w in at.warning).replace("\\", "")
    assert re.search(r"In all about 3,\d{3} chunks from 12 files: embedding them takes about \d+ (s|min)", warning)
    assert at.button(key="kb_ingest_large") is not None and "kb_job" not in at.session_state
    at.button(key="kb_drop_large").click()
    at.run()


def test_a_file_over_the_ingest_limit_reaches_the_server_and_is_refused_by_name(app_env):
    from knowledge.loaders import MAX_FILE_BYTES

    at = page()
    # The uploader lets through files up to 200 MB: the browser refuses larger ones before the page hears of them.
    assert at.file_uploader(key="kb_upload").proto.max_upload_size_mb >= 200
    huge = b"x" * (MAX_FILE_BYTES + 1_000_000)
    at.file_uploader(key="kb_upload").set_value([("huge.txt", huge, "text/plain"), ("refunds.md", REFUNDS, "text/markdown")])
    at.button(key="kb_ingest").click()
    at = finish_job(at.run())
    assert not at.exception
    shown = texts(at)
    assert "**huge.txt**: is 53 MB; the limit is 52 MB" in shown and "**refunds.md**:" in shown
