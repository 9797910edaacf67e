"""The demo articles' shipped vectors: current, equal to the model's, and refused when they cannot be."""

from __future__ import annotations

import numpy as np

from chatbot.services import DEMO_DOCS
from knowledge.shipped_vectors import DEMO_VECTORS, ShippedVectors, load_shipped, text_key, write_shipped
from tests.conftest import make_kb

REGENERATE = "the demo articles changed: run `python -m chatbot demo-vectors` and commit knowledge/demo-vectors.npz"


def test_seeding_the_demo_articles_embeds_nothing(kb, embedder):
    shipped = load_shipped(embedder)
    assert shipped is not None, "knowledge/demo-vectors.npz is missing or unreadable"
    results = kb.ingest_paths([DEMO_DOCS], vectors=shipped)
    assert all(r.status == "added" for r in results)
    assert shipped.misses == 0, REGENERATE
    assert shipped.hits == kb.chunk_count() + len(results)  # every chunk and every title


def test_the_shipped_vectors_are_what_the_model_gives_today(tmp_path, embedder):
    fresh = tmp_path / "fresh.npz"
    write_shipped(DEMO_DOCS, embedder, fresh)
    with np.load(DEMO_VECTORS) as shipped, np.load(fresh) as regenerated:
        assert list(shipped["keys"]) == list(regenerated["keys"]), REGENERATE
        cosines = (shipped["vectors"] * regenerated["vectors"]).sum(axis=1)
        assert cosines.min() > 0.9999


def test_a_search_over_shipped_vectors_ranks_as_over_fresh_ones(tmp_path, embedder, demo_kb):
    kb = make_kb(tmp_path, embedder)
    try:
        kb.ingest_paths([DEMO_DOCS], vectors=load_shipped(embedder))
        for query in ("how do i get my money back", "camera keeps going offline", "delete my account data"):
            assert [p.source for p in kb.search(query, k=5)] == [p.source for p in demo_kb.search(query, k=5)]
    finally:
        kb.close()


class OtherModel:
    """Another model of the same size: the same vectors, rotated."""

    def __init__(self, embedder):
        self.embedder, self.dimension = embedder, embedder.dimension

    def embed(self, texts, batch_size: int = 64):
        return np.roll(self.embedder.embed(texts, batch_size=batch_size), 1, axis=1)


def test_another_models_store_is_not_given_the_shipped_vectors(embedder):
    assert load_shipped(OtherModel(embedder)) is None


def test_a_missing_or_damaged_file_means_embedding_as_usual(tmp_path, embedder):
    assert load_shipped(embedder, tmp_path / "absent.npz") is None
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(DEMO_VECTORS.read_bytes()[:1000])
    assert load_shipped(embedder, damaged) is None


def test_a_text_the_file_lacks_is_embedded_by_the_model(embedder):
    known = np.full(embedder.dimension, embedder.dimension ** -0.5, dtype=np.float32)
    vectors = ShippedVectors(embedder, {text_key("known text"): known})
    out = vectors.embed(["known text", "a refund for a parcel that never came"])
    assert np.array_equal(out[0], known)
    assert np.allclose(out[1], embedder.embed(["a refund for a parcel that never came"])[0], atol=1e-5)
    assert (vectors.hits, vectors.misses) == (1, 1)
