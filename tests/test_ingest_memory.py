"""Ingestion within Streamlit Community Cloud's memory: bounded embedding batches, the same vectors.

The memory test runs a whole 2 MiB upload in a fresh process that stands in for the app's server
on the chat-only install (bench/ingest_memory.py: training packages blocked, Streamlit imported,
the services built as the app builds them) and reads the process's peak resident memory (VmHWM).
It is a memory limit, not a time limit.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.ingest_memory import LIMIT_MB, handbook, measure
from knowledge.embeddings import MAX_BATCH_TOKENS, _batches
from knowledge.chunking import ChunkSettings, chunk_document
from knowledge.loaders import load_bytes


def mixed_texts() -> list[str]:
    """Texts of every length the embedder meets: empty, a word, queries, chunks, one past 256 tokens."""
    chunks = [c.embedding_text() for c in chunk_document(load_bytes("h.md", handbook(60_000).encode()),
                                                          ChunkSettings())]
    return ["", "hi", "How do I get a refund?", "E-102 on the doorbell", *chunks[:16],
            " ".join(chunks[:6]), "refund " * 400]


def unbounded_vectors(embedder, texts: list[str]) -> np.ndarray:
    """The vectors as the embedder made them before batches were bounded: 64 texts per run,
    sorted by characters, padded by the tokenizer to the longest of each run."""
    encoder = embedder._encoder
    tokenizer = encoder.tokenizer.__class__.from_str(encoder.tokenizer.to_str())
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.empty((len(texts), embedder.dimension), dtype=np.float32)
    for start in range(0, len(texts), 64):
        rows = order[start:start + 64]
        encodings = tokenizer.encode_batch([texts[i] for i in rows])
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        out[rows] = encoder._query.run(None, {"input_ids": ids, "attention_mask": mask,
                                              "token_type_ids": np.zeros_like(ids)})[0]
    return out


def test_bounded_batches_give_the_same_vectors(embedder):
    texts = mixed_texts()
    got = embedder.embed(texts)
    expected = unbounded_vectors(embedder, texts)
    cosine = np.sum(got * expected, axis=1)
    assert got.shape == expected.shape and cosine.min() > 0.99999, cosine.min()
    assert np.abs(got - expected).max() < 1e-5
    # One at a time (no padding at all) agrees too, in the original order.
    alone = np.stack([embedder.embed_one(t) for t in texts[:6]])
    assert np.sum(alone * got[:6], axis=1).min() > 0.99999


def test_no_run_holds_more_than_the_token_budget():
    lengths = [2, 256, 7, 256, 130, 40, 256, 3, 90, 256, 256, 12, 200]
    groups = _batches([[1] * n for n in lengths], 64, 512)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))  # every text once
    for group in groups:
        longest = max(lengths[i] for i in group)
        assert len(group) * longest <= 512 or len(group) == 1, [lengths[i] for i in group]
    assert max(len(g) for g in _batches([[1] * 5] * 200, 64, 100_000)) == 64
    # The shipped budget keeps a run of full-length chunks to a handful of texts, not 64.
    assert len(_batches([[1] * 256] * 64, 64, MAX_BATCH_TOKENS)[0]) == MAX_BATCH_TOKENS // 256


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a guard against a hung process on a loaded machine, not a speed limit
def test_a_2mb_upload_stays_under_the_cloud_memory_on_the_chat_only_install():
    report = measure("upload-2mb", lean=True)
    assert report["states"] == ["added"] and not report["error"], report
    assert report["chunks"] > 2500, report  # the whole handbook was embedded and written
    assert report["embedder"] == "onnx" and report["training_imported"] == [], report
    assert report["peak_mb"] < LIMIT_MB, report
    # The job's working memory is given back: the process ends near where it started, not at its peak.
    assert report["after_mb"] - report["before_mb"] < 150, report
