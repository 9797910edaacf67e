"""Fusion of the vector and keyword rankings, and the document evidence applied after it."""

from __future__ import annotations

import pytest

from knowledge.fusion import convex, document_evidence, fuse, normalise, rrf


def test_rrf_adds_one_over_k_plus_rank_from_each_list():
    fused = rrf(["a", "b", "c"], ["c", "a"], k=60)
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["b"] == pytest.approx(1 / 62)
    assert sorted(fused, key=fused.get, reverse=True) == ["a", "c", "b"]


def test_convex_weights_normalised_scores_and_gives_a_missing_list_zero():
    fused = convex({"a": 0.9, "b": 0.5}, {"b": 12.0, "c": 4.0}, vector_weight=0.8)
    assert fused == pytest.approx({"a": 0.8, "b": 0.2, "c": 0.0})
    assert normalise({"x": 3.0, "y": 3.0}) == {"x": 1.0, "y": 1.0}


def test_fuse_refuses_an_unknown_method():
    with pytest.raises(ValueError, match="convex, rrf"):
        fuse({"a": 1.0}, {}, "max")


def test_a_document_matching_in_two_places_beats_one_lucky_passage():
    scores = {"lucky": 1.0, "a1": 0.9, "a2": 0.8, "filler": 0.0}
    doc_of = {"lucky": "L", "a1": "A", "a2": "A", "filler": "F"}
    boosted = document_evidence(scores, doc_of, second_weight=0.3)
    assert boosted["a1"] == pytest.approx(0.9 + 0.3 * 0.8)
    assert boosted["a2"] == pytest.approx(0.8 + 0.3 * 0.9)
    assert boosted["lucky"] == pytest.approx(1.0)
    assert max(boosted, key=boosted.get) == "a1"


def test_title_similarity_breaks_ties_between_documents():
    scores = {"x": 0.5, "y": 0.5, "z": 0.0}
    doc_of = {"x": "X", "y": "Y", "z": "Z"}
    ranked = document_evidence(scores, doc_of, {"X": 0.2, "Y": 0.7, "Z": 0.1}, title_weight=0.2, second_weight=0.0)
    assert sorted(ranked, key=ranked.get, reverse=True) == ["y", "x", "z"]
