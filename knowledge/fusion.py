"""Fusing ranked lists from several retrievers into one ranking."""

from __future__ import annotations

from typing import Mapping

FUSIONS = ("convex", "rrf")
# The RRF constant from Cormack et al. (2009); larger values flatten the rank curve.
RRF_K = 60
# Share of the fused score given to the vector retriever in the convex combination.
VECTOR_WEIGHT = 0.8


def normalise(scores: Mapping[str, float]) -> dict[str, float]:
    """Min-max scale scores to 0..1 (all equal -> 1.0)."""
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    span = high - low
    return {key: (value - low) / span if span else 1.0 for key, value in scores.items()}


def convex(
    vector: Mapping[str, float], keyword: Mapping[str, float], vector_weight: float = VECTOR_WEIGHT
) -> dict[str, float]:
    """Convex combination of min-max normalised scores; a list missing an item gives it 0."""
    v, kw = normalise(vector), normalise(keyword)
    return {key: vector_weight * v.get(key, 0.0) + (1 - vector_weight) * kw.get(key, 0.0) for key in {*v, *kw}}


def rrf(*rankings: list[str], k: int = RRF_K, weights: list[float] | None = None) -> dict[str, float]:
    """Reciprocal rank fusion: each list adds weight / (k + rank) for the items it ranks (rank from 1)."""
    weights = weights or [1.0] * len(rankings)
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, key in enumerate(ranking, 1):
            fused[key] = fused.get(key, 0.0) + weight / (k + rank)
    return fused


def fuse(vector: Mapping[str, float], keyword: Mapping[str, float], method: str) -> dict[str, float]:
    """Fuse two score maps (higher is better) with the named method."""
    if method == "convex":
        return convex(vector, keyword)
    if method == "rrf":
        by_score = lambda scores: sorted(scores, key=scores.get, reverse=True)  # noqa: E731
        return rrf(by_score(vector), by_score(keyword))
    raise ValueError(f"unknown fusion {method!r}; use one of {', '.join(FUSIONS)}")


# Document evidence: on the shipped query set, both weights helped each half of the set alike
# (0.1 to 0.5 all did); these are round values in that range, not tuned to the last query.
TITLE_WEIGHT = 0.2
SECOND_PASSAGE_WEIGHT = 0.3


def document_evidence(
    scores: Mapping[str, float],
    doc_of: Mapping[str, str],
    title_similarity: Mapping[str, float] | None = None,
    title_weight: float = TITLE_WEIGHT,
    second_weight: float = SECOND_PASSAGE_WEIGHT,
) -> dict[str, float]:
    """Re-score passages with what their document says as a whole.

    Scores are min-max scaled; a passage's score is blended with its document title's similarity to the query
    (min-max scaled over the candidate documents), then raised by `second_weight`
    times the best other passage of the same document: an article that matches in
    several places is more likely the answer than one lucky chunk. Ranking documents
    by their best passage then ranks them by best + second_weight * second best.
    """
    # On one 0..1 scale first, so the weights mean the same for every fusion (RRF scores are tiny).
    scores = normalise(scores)
    if title_similarity:
        titles = normalise({doc: title_similarity[doc] for doc in set(doc_of.values()) if doc in title_similarity})
        scores = {key: (1 - title_weight) * value + title_weight * titles.get(doc_of[key], 0.0)
                  for key, value in scores.items()}
    best: dict[str, list[float]] = {}
    for key, value in scores.items():
        top = best.setdefault(doc_of[key], [float("-inf"), float("-inf")])
        if value > top[0]:
            top[0], top[1] = value, top[0]
        elif value > top[1]:
            top[1] = value
    out = {}
    for key, value in scores.items():
        first, second = best[doc_of[key]]
        other = second if value >= first else first
        out[key] = value + second_weight * (other if other > float("-inf") else 0.0)
    return out
