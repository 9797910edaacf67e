"""Background ingestion as the knowledge page runs it: per-file states, cancel, re-index."""

from __future__ import annotations

import threading

import pytest

from knowledge import ingest
from knowledge.chunking import ChunkSettings
from knowledge.jobs import IngestionJob
from tests.conftest import make_kb
from tests.test_knowledge_store import PASSWORDS, REFUNDS, THERMOSTAT


class GatedEmbedder:
    """The real embedder, holding the passwords article's chunks until the test opens the gate."""

    def __init__(self, embedder):
        self.embedder, self.dimension = embedder, embedder.dimension
        self.gate, self.waiting = threading.Event(), threading.Event()

    def embed(self, texts, batch_size: int = 64):
        if any("Forgot password" in t for t in texts):
            self.waiting.set()
            self.gate.wait(60)
        return self.embedder.embed(texts, batch_size=batch_size)

    def embed_one(self, text):
        return self.embedder.embed_one(text)


def test_cancel_keeps_finished_files_and_nothing_of_the_one_in_flight(tmp_path, embedder, monkeypatch):
    monkeypatch.setattr(ingest, "COMMIT_CHUNKS", 1)  # each file is its own commit
    gated = GatedEmbedder(embedder)
    kb = make_kb(tmp_path, gated)
    try:
        job = IngestionJob(kb, uploads=[("refunds.md", REFUNDS), ("passwords.md", PASSWORDS),
                                        ("thermostat.md", THERMOSTAT)]).start()
        assert gated.waiting.wait(60)  # the first file is committed, the second is being embedded
        assert job.running and [f.state for f in job.files][0] == "added"
        job.cancel()
        gated.gate.set()
        assert job.wait(60)
        assert [(f.name, f.state) for f in job.files] == [
            ("refunds.md", "added"), ("passwords.md", "cancelled"), ("thermostat.md", "cancelled")]
        assert [d.source for d in kb.documents()] == ["refunds.md"]
        assert kb.stats() == {"documents": 1, "chunks": 2, "vectors_stored": 2, "keyword_rows": 2}
    finally:
        gated.gate.set()
        kb.close()


def test_each_file_ends_with_its_own_result(kb):
    job = IngestionJob(kb, uploads=[("refunds.md", REFUNDS), ("notes.txt", b"\x00\x01binary"),
                                    ("refunds.md", REFUNDS)]).start()
    assert job.wait(120) and not job.error
    assert [(f.name, f.state) for f in job.files] == [
        ("refunds.md", "added"), ("notes.txt", "error"), ("refunds.md", "unchanged")]
    assert "binary" in job.files[1].error and job.files[0].chunks == 2


@pytest.mark.parametrize("force", [False, True])
def test_a_reindex_job_rechunks_with_the_new_settings(kb, force):
    kb.ingest_uploads([("refunds.md", REFUNDS), ("passwords.md", PASSWORDS)])
    job = IngestionJob(kb, reindex=ChunkSettings(120, 20), force=force).start()
    assert job.wait(120) and not job.error
    assert {f.state for f in job.files} == {"updated"}
    assert kb.chunking == ChunkSettings(120, 20) and not kb.needs_reindex()


class PausingEmbedder:
    """The real embedder, pausing before its second batch until the test has read the progress line."""

    def __init__(self, embedder):
        self.embedder, self.dimension = embedder, embedder.dimension
        self.calls, self.paused, self.resume = 0, threading.Event(), threading.Event()

    def embed(self, texts, batch_size: int = 64):
        self.calls += 1
        if self.calls == 2:
            self.paused.set()
            self.resume.wait(60)
        return self.embedder.embed(texts, batch_size=batch_size)

    def embed_one(self, text):
        return self.embedder.embed_one(text)


def test_progress_counts_chunks_done_of_chunks_expected_and_time_left(tmp_path, embedder, monkeypatch):
    from ui.knowledge_jobs import job_progress

    monkeypatch.setattr(ingest, "EMBED_BATCH", 16)  # several batches, so progress shows between them
    pausing = PausingEmbedder(embedder)
    kb = make_kb(tmp_path, pausing)
    text = "\n\n".join(f"Section {i}. " + "The doorbell battery lasts longer with fewer motion events. " * 12
                       for i in range(120))
    try:
        job = IngestionJob(kb, uploads=[("battery.txt", text.encode())])
        estimate = job.chunks_expected
        assert estimate > 50  # estimated from the file's size before anything is read
        job.start()
        assert pausing.paused.wait(120)  # one batch written, the next one held
        fraction, line = job_progress(job)
        pausing.resume.set()
        assert job.wait(120) and not job.error
        written = job.files[0].chunks
        assert job.files[0].state == "added" and job.chunks_written == written == job.chunks_expected
        assert abs(written - estimate) / written < 0.5  # the size estimate was in the right range
        assert f"16 of {written:,} chunks" in line and "left" in line, line
        assert 0 < fraction < 1
    finally:
        pausing.resume.set()
        kb.close()
