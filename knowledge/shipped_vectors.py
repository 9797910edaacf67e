"""Vectors shipped with the demo articles, so a first start does not embed them again.

A first start on an empty data directory (every wake-up on Streamlit Community Cloud, whose
disk is wiped) would otherwise spend about ten seconds of both cores embedding the 46 demo
articles. The file holds a hash and a vector for every text that ingesting them embeds, and
the vector of a probe sentence: when the running model gives another vector for the probe
(another model is configured), the file is not used. A text it does not hold (an article
edited since, or other chunk settings) is embedded as usual.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

DEMO_VECTORS = Path(__file__).resolve().parent / "demo-vectors.npz"
PROBE = "Nimbus Home support: how do I get a refund for my order?"
# Same model, another runtime or thread count: cosine 1.0000 measured; another model: far below.
SAME_MODEL = 0.9999


def text_key(text: str) -> str:
    """The file's key for one embedded text."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


class ShippedVectors:
    """An embedder that answers the texts the file holds and embeds the rest with the model."""

    def __init__(self, embedder, table: dict[str, np.ndarray]):
        self.embedder = embedder
        self.dimension = embedder.dimension
        self._table = table
        self.hits = self.misses = 0

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Vectors for `texts`: the file's where it has them, the model's otherwise."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        missing = []
        for i, text in enumerate(texts):
            vector = self._table.get(text_key(text))
            if vector is None:
                missing.append(i)
            else:
                out[i] = vector
        if missing:
            out[missing] = self.embedder.embed([texts[i] for i in missing], batch_size=batch_size)
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        return out

    def embed_one(self, text: str) -> np.ndarray:
        return self.embedder.embed_one(text)


def load_shipped(embedder, path: Path = DEMO_VECTORS) -> ShippedVectors | None:
    """The file's vectors over `embedder`; None when it is missing, damaged or from another model."""
    try:
        with np.load(path) as data:
            keys, vectors, probe = data["keys"], data["vectors"].astype(np.float32), data["probe"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        log.info("no shipped demo vectors (%s): %s", path, exc)
        return None
    if vectors.ndim != 2 or vectors.shape != (len(keys), embedder.dimension) or probe.shape != (embedder.dimension,):
        log.info("shipped demo vectors do not fit this model's dimension; embedding instead")
        return None
    if float(np.dot(embedder.embed([PROBE])[0], probe)) < SAME_MODEL:
        log.info("shipped demo vectors come from another model; embedding instead")
        return None
    return ShippedVectors(embedder, {str(k): v for k, v in zip(keys, vectors)})


class _Recorder:
    """Embeds with the model and keeps every text and vector it was asked for."""

    def __init__(self, embedder):
        self.embedder = embedder
        self.dimension = embedder.dimension
        self.seen: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        vectors = np.asarray(self.embedder.embed(list(texts), batch_size=batch_size), dtype=np.float32)
        self.seen.update((text_key(t), v) for t, v in zip(texts, vectors))
        return vectors

    def embed_one(self, text: str) -> np.ndarray:
        return self.embedder.embed_one(text)


def write_shipped(docs: Path, embedder, target: Path = DEMO_VECTORS) -> int:
    """Ingest `docs` into a throw-away store as the app does and save every vector it embedded."""
    from knowledge.store import KnowledgeBase, make_chroma_client

    recorder = _Recorder(embedder)
    with tempfile.TemporaryDirectory(prefix="demo-vectors-") as tmp:
        kb = KnowledgeBase(make_chroma_client(Path(tmp) / "chroma"), embedder, Path(tmp) / "index")
        try:
            failed = [r for r in kb.ingest_paths([docs], vectors=recorder) if r.status == "error"]
        finally:
            kb.close()
    if failed:
        raise ValueError(f"{len(failed)} demo articles failed to ingest: {failed[0].source}: {failed[0].error}")
    keys = sorted(recorder.seen)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        np.savez_compressed(out, keys=np.array(keys), vectors=np.stack([recorder.seen[k] for k in keys]),
                            probe=np.asarray(embedder.embed([PROBE])[0], dtype=np.float32))
    return len(keys)
