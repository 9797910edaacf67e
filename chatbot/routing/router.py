"""The intent router: the classifier head with route choices, follow-up joining, persistence and caching."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from chatbot.routing.follow_ups import FOLLOW_UP_CUE, is_follow_up, is_short, join_turns
from chatbot.routing.intent_head import IntentHead
from chatbot.routing.routes import DEFAULT_TEMPLATE, TOP_K, UNKNOWN, Route, RouteChoice

if TYPE_CHECKING:
    from knowledge.embeddings import Embedder

log = logging.getLogger(__name__)

# Bumped when the fitted model's layout changes, so cached routers are refitted.
ROUTER_VERSION = "4"


class IntentRouter(IntentHead):
    """Routes messages to intents with the classifier head, abstaining where it is likely wrong."""

    def __init__(self, routes: Sequence[Route] = (), *, embedder: "Embedder | None" = None, **params):
        super().__init__(embedder=embedder, **params)
        self.routes = {r.name: r for r in routes}
        # Vectors of recent messages, so a follow-up can be joined to the previous turn
        # without embedding it again.
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()
        self._recent_lock = threading.Lock()

    def _fit(self, texts: Sequence[str], labels: Sequence[str], vectors: np.ndarray | None) -> "IntentRouter":
        super()._fit(texts, labels, vectors)
        with self._recent_lock:
            self._recent.clear()
        return self

    # -- routing ------------------------------------------------------------------

    def route(self, text: str, vector: np.ndarray, history: Sequence[str] = ()) -> RouteChoice:
        """Route one message; `history` holds the customer's earlier messages, oldest first."""
        history = list(history)
        if history and history[-1] == text:
            history.pop()  # a caller that passes the whole conversation, this message included
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        self._remember(text, vector)
        choice = self._choose(self.probabilities([text], vector)[0], source="router")
        if history and is_follow_up(text, choice):
            previous = self._topic_message(history)
            if previous is not None:
                joined, joined_vector = join_turns(previous[0], previous[1], text, vector)
                return self._choose(self.probabilities([joined], joined_vector)[0], source="follow-up")
        return choice

    def _choose(self, probs: np.ndarray, source: str) -> RouteChoice:
        order = np.argsort(-probs)
        scores = [(self.classes[i], float(probs[i])) for i in order[:TOP_K]]
        best, confidence = scores[0]
        runner_up = scores[1][1] if len(scores) > 1 else 0.0
        abstained = confidence < self.thresholds.get(best, 0.0) or confidence - runner_up < self.margin
        intent = UNKNOWN if abstained else best
        route = self.routes.get(intent)
        return RouteChoice(
            intent=intent,
            confidence=confidence,
            scores=scores,
            abstained=abstained,
            template=route.template if route else DEFAULT_TEMPLATE,
            escalate=bool(route and route.escalate),
            source=source,
        )

    def _remember(self, text: str, vector: np.ndarray) -> None:
        with self._recent_lock:
            self._recent[text] = vector
            self._recent.move_to_end(text)
            while len(self._recent) > 2048:
                self._recent.popitem(last=False)

    def _topic_message(self, history: Sequence[str]) -> tuple[str, np.ndarray] | None:
        """The latest earlier message that states a topic (not a follow-up, not a greeting), with its vector."""
        for previous in [h for h in history if h.strip()][::-1][:3]:
            if is_short(previous) and FOLLOW_UP_CUE.search(previous):
                continue
            with self._recent_lock:
                vector = self._recent.get(previous)
            if vector is None:
                if self.embedder is None:
                    return None
                vector = self.embedder.embed_one(previous)
                self._remember(previous, vector)
            route = self.routes.get(self.classes[int(np.argmax(self.probabilities([previous], vector)[0]))])
            if route is None or route.topic:
                return previous, vector
        return None

    # -- persistence --------------------------------------------------------------

    def save(self, path: str | Path, extra: dict[str, np.ndarray] | None = None) -> None:
        """Write the fitted router to one .npz file (arrays and JSON; no pickle), atomically.

        `extra` arrays are stored beside the router's own (`load` ignores them).
        """
        if self._head is None:
            raise ValueError("nothing to save: the router is not trained")
        head = self._head
        meta = {
            "version": ROUTER_VERSION, "routes": [asdict(r) for r in self.routes.values()],
            "params": {k: getattr(self, k) for k in self.PARAMS}, "thresholds": self.thresholds,
            "margin": self.margin, "classes": head["classes"],
            "blocks": [{"analyzer": b["analyzer"], "ngrams": b["ngrams"]} for b in head["text_blocks"]],
        }
        arrays = {**(extra or {}), "meta": np.array(json.dumps(meta)), "intercept": head["intercept"],
                  "embedding_weights": head["embedding_weights"], "vectors": head["vectors"], "labels": head["labels"]}
        for i, block in enumerate(head["text_blocks"]):
            terms = sorted(block["vocabulary"], key=block["vocabulary"].get)
            arrays[f"terms{i}"] = np.array(terms, dtype=str)
            arrays[f"idf{i}"], arrays[f"weights{i}"] = block["idf"], block["weights"]
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; it is a cache, not a secret
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load(cls, path: str | Path, embedder: "Embedder | None" = None) -> "IntentRouter":
        """Read a router written by `save`."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("version") != ROUTER_VERSION:
                raise ValueError(f"{path} is not a router saved by this version")
            blocks = [
                {**spec, "vocabulary": {t: i for i, t in enumerate(data[f"terms{i}"].tolist())},
                 "idf": data[f"idf{i}"], "weights": data[f"weights{i}"]}
                for i, spec in enumerate(meta["blocks"])
            ]
            head = {"classes": meta["classes"], "text_blocks": blocks,
                    **{k: data[k] for k in ("intercept", "embedding_weights", "vectors", "labels")}}
        router = cls([Route(**r) for r in meta["routes"]], embedder=embedder, **meta["params"])
        router.thresholds, router.margin, router._head = meta["thresholds"], meta["margin"], head
        router.classes = head["classes"]
        return router


def routes_digest(routes: Sequence[Route], model_path: str = "") -> str:
    """A key for a fitted router: the routes' content, the embedding model and the code version."""
    payload = json.dumps([asdict(r) for r in routes], sort_keys=True, ensure_ascii=False)
    extra = f"{ROUTER_VERSION}|{model_path}"
    return hashlib.sha256(f"{payload}|{extra}".encode()).hexdigest()[:16]


def router_for_routes(routes: Sequence[Route], embedder: "Embedder", cache_dir: str | Path) -> IntentRouter:
    """A router trained on the routes' utterances, cached in `cache_dir` by the routes' content."""
    path = Path(cache_dir) / f"router-{routes_digest(routes, getattr(embedder, 'model_path', ''))}.npz"
    if path.exists():
        try:
            return IntentRouter.load(path, embedder=embedder)
        except (OSError, ValueError, KeyError, EOFError) as exc:
            log.warning("refitting the router: cached %s is unreadable (%s)", path, exc)
    from chatbot.routing.shipped_router import load_shipped_router  # here: it imports this module

    shipped = load_shipped_router(routes, embedder)
    if shipped is not None:
        return shipped
    texts = [u for r in routes for u in r.utterances]
    labels = [r.name for r in routes for _ in r.utterances]
    router = IntentRouter(routes, embedder=embedder).fit(texts, labels, embedder.embed(texts))
    router.save(path)
    return router
