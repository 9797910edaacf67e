"""The intent router fitted on the shipped intents, so a first start does not train it.

A first start on an empty data directory (every wake-up on Streamlit Community Cloud, whose disk
is wiped) would otherwise import scikit-learn, embed every utterance of `chatbot/routing/intents.yaml`
and fit the router: most of that start's CPU time (see BENCHMARKS.md, "Deploy fit"). The file
holds the fitted router, the digest of the routes it was fitted on and the vector of a probe
sentence: when the routes differ (the intents were edited since) or the running model gives another
vector for the probe (another model is configured), it is not used and the router is fitted as
before. `python -m chatbot shipped-router` rewrites it.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from chatbot.routing.routes import Route
from chatbot.routing.router import IntentRouter, routes_digest
from knowledge.shipped_vectors import PROBE, SAME_MODEL

if TYPE_CHECKING:
    from knowledge.embeddings import Embedder

log = logging.getLogger(__name__)

SHIPPED_ROUTER = Path(__file__).resolve().parent / "shipped-router.npz"


def load_shipped_router(routes: Sequence[Route], embedder: "Embedder",
                        path: Path = SHIPPED_ROUTER) -> IntentRouter | None:
    """The shipped router when it was fitted on `routes` with this embedding model, else None."""
    try:
        with np.load(path, allow_pickle=False) as data:
            digest, probe = str(data["routes_digest"]), data["probe"].astype(np.float32)
        if digest != routes_digest(routes):
            log.info("the intents differ from the shipped router's; fitting one")
            return None
        if probe.shape != (embedder.dimension,) or float(np.dot(embedder.embed([PROBE])[0], probe)) < SAME_MODEL:
            log.info("the shipped router was fitted with another embedding model; fitting one")
            return None
        return IntentRouter.load(path, embedder=embedder)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        log.info("no shipped router (%s): %s", path, exc)
        return None


def write_shipped_router(routes: Sequence[Route], embedder: "Embedder", target: Path = SHIPPED_ROUTER) -> int:
    """Fit the router on `routes` with `embedder` and write it to `target`; returns the utterances used."""
    texts = [u for r in routes for u in r.utterances]
    labels = [r.name for r in routes for _ in r.utterances]
    router = IntentRouter(routes, embedder=embedder).fit(texts, labels, embedder.embed(texts))
    router.save(target, extra={"routes_digest": np.array(routes_digest(routes)),
                               "probe": np.asarray(embedder.embed([PROBE])[0], dtype=np.float32)})
    return len(texts)
