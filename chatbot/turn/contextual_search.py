"""Retrieval for a message in its conversation: a follow-up ("and how much does it cost?") is
searched together with the customer's previous message, so it finds what the conversation is about.

Measured on knowledge/eval/follow_ups.jsonl (BENCHMARKS.md, "Follow-up questions"): searching the
message alone misses the topic of short follow-ups; searching the joined text alone drags a new
question back to the old topic. Both searches, merged per passage with the joined search's score
weighted slightly lower, found every follow-up's article in the top 5 and kept every topic switch
on its own article.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from common.types import Passage
from knowledge.store import KnowledgeBase

# The joined search's scores are weighted down so that a message that stands alone keeps its own
# best passages first (0.95 measured best of 1.0, 0.95 and 0.9 on the follow-up set).
JOINED_WEIGHT = 0.95


def search_in_context(knowledge: KnowledgeBase, text: str, vector: np.ndarray, history: Sequence[str],
                      k: int) -> list[Passage]:
    """The `k` best passages for `text`, given the customer's earlier messages (oldest first).

    Without history this is `knowledge.search(text, k, query_vector=vector)`. With history, a
    second search runs on the previous message joined with this one (one more encoder pass) and
    the two result lists are merged by passage, each keeping its better score.
    """
    alone = knowledge.search(text, k=k, query_vector=vector)
    previous = next((message for message in reversed(history) if message.strip() and message != text), "")
    if not previous or k <= 0:
        return alone
    joined = f"{previous} {text}"
    together = knowledge.search(joined, k=k, query_vector=knowledge.embedder.embed_one(joined))
    best: dict[tuple[str, int], Passage] = {}
    for passage, weight in [*((p, 1.0) for p in alone), *((p, JOINED_WEIGHT) for p in together)]:
        key = (passage.doc_id or passage.source, passage.chunk)
        score = float(passage.score) * weight
        if key not in best or score > best[key].score:
            best[key] = Passage(**{**passage.__dict__, "score": score})
    return sorted(best.values(), key=lambda p: -p.score)[:k]
