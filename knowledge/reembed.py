"""A knowledge base built with another embedding model: found on start, searched by keywords
meanwhile, re-embedded on request.

The chunks collection's metadata records the model that made its vectors (`embedding_model`:
`Embedder.model_id`, which includes the text form embedded) and their dimension. On start a
recorded model or dimension other than the running embedder's is a `ModelChange`: vector search
is off (searches answer from the keyword index, with the reason in `KnowledgeBase.degraded`),
ingestion is refused with `EmbeddingModelChanged`, and `rebuild_sources` re-embeds every document
from the text the registry keeps. A store made before models were recorded is checked once: the
dimension of a stored vector, and one stored chunk embedded again (the same model gives cosine
1.0; 0.996 across the text-form change of `common.text`, measured on the demo articles; another
model of the same size far less), then the running model is recorded.

A rebuild renames the old collections with `-previous` and starts fresh ones under the usual
names, so a rebuild that is cancelled or dies goes on from the old registry at the next try;
the old collections are dropped once every document was read again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from common.errors import EmbeddingModelChanged, IngestError, VectorStoreUnavailable
from knowledge.registry import Registry
from knowledge.sync import reachable

log = logging.getLogger(__name__)

MODEL_KEY = "embedding_model"
DIMENSION_KEY = "embedding_dimension"
PREVIOUS = "-previous"
# Below this cosine, a stored chunk's vector and the same text embedded now come from two models.
SAME_MODEL_COSINE = 0.98


def model_id_of(embedder) -> str | None:
    """The embedding model's id, through wrappers (shipped vectors, caches) to the model itself; None
    for an embedder that does not say (a test double), which is then checked by its dimension alone."""
    seen = embedder
    for _ in range(5):
        found = getattr(seen, "model_id", None)
        if isinstance(found, str) and found:
            return found
        seen = getattr(seen, "embedder", None)
        if seen is None:
            break
    return None


@dataclass
class ModelChange:
    """The model the stored vectors come from, against the running one."""

    recorded_model: str
    recorded_dimension: int
    current_model: str
    current_dimension: int

    @property
    def message(self) -> str:
        return (f"The knowledge base was built with the embedding model {self.recorded_model} "
                f"({self.recorded_dimension} dimensions); this app embeds with {self.current_model} "
                f"({self.current_dimension} dimensions). Vector search is off and answers come from keyword "
                "search until the knowledge base is rebuilt (Knowledge base page: Rebuild with this model, or "
                "`python -m chatbot rebuild-knowledge`).")


class Reembedding:
    """The part of KnowledgeBase that knows which model made its vectors (it provides the stores)."""

    model_change: ModelChange | None = None

    def _check_model(self) -> None:
        """Compare the model recorded on the chunks collection with the running one (see the module)."""
        current, dimension = model_id_of(self.embedder), int(self.embedder.dimension)
        meta = dict(self._chunks.metadata or {})
        recorded = meta.get(MODEL_KEY)
        if recorded is None:
            recorded, stored_dimension = self._probe_model(current, dimension)
            if recorded == current and current is not None:
                self._chunks.modify(metadata={**meta, MODEL_KEY: current, DIMENSION_KEY: dimension})
        else:
            stored_dimension = int(meta.get(DIMENSION_KEY, 0))
        if current is None:  # an embedder that does not name its model: its dimension must fit
            current = recorded if stored_dimension == dimension else "this model"
        if recorded != current or stored_dimension != dimension:
            self.model_change = ModelChange(str(recorded), stored_dimension, current, dimension)
            log.warning("%s", self.model_change.message)
        else:
            self.model_change = None

    def _probe_model(self, current: str | None, dimension: int) -> tuple[str | None, int]:
        """For a store that records no model: which model its vectors look like (see the module)."""
        got = self._chunks.get(limit=1, include=["embeddings", "documents", "metadatas"])
        if not got["ids"]:
            return current, dimension
        stored = np.asarray(got["embeddings"][0], dtype=np.float32)
        if stored.shape != (dimension,):
            return "an unrecorded model", int(stored.shape[-1])
        if current is None:
            return None, dimension
        from knowledge.ingest import _chunk

        again = self.embedder.embed([_chunk(got["documents"][0], got["metadatas"][0]).embedding_text()])[0]
        cosine = float(stored @ again / ((np.linalg.norm(stored) * np.linalg.norm(again)) or 1.0))
        return (current, dimension) if cosine >= SAME_MODEL_COSINE else ("an unrecorded model", dimension)

    def _refuse_if_model_changed(self) -> None:
        if self.model_change is not None:
            raise EmbeddingModelChanged(self.model_change.message)

    @property
    def rebuild_unfinished(self) -> bool:
        """A rebuild was started and has not read every document yet (False while the store cannot say)."""
        try:
            with reachable():
                return self._previous_registry_name() in self._store.collection_names()
        except VectorStoreUnavailable:
            return False

    def _previous_registry_name(self) -> str:
        return f"{self._collection}-documents{PREVIOUS}"

    def rebuild_sources(self) -> list:
        """Start (or go on with) re-embedding every document with the running model; returns the
        (name, loader) sources to ingest, each loading a document from the text the old registry
        kept. A document stored without its text (before the registry kept texts) raises
        IngestError when loaded: upload it again."""
        with self._writing():
            names = self._store.collection_names()
            previous_registry = self._previous_registry_name()
            if previous_registry not in names:
                self._chunks.modify(name=f"{self._collection}{PREVIOUS}")
                Registry(self._store, f"{self._collection}-documents", 0).rename(previous_registry)
                log.info("re-embedding the knowledge base with %s", model_id_of(self.embedder) or "this model")
            self._open_collections()
            self._check_model()
            if self.model_change is not None:  # the fresh ones of a rebuild begun with yet another model
                for name in (self._collection, f"{self._collection}-documents"):
                    self._store.delete_collection(name)
                self._open_collections()
                self._check_model()
            self._docs, self._titles, self._generation = {}, {}, None
            self.sync(force=True)  # the fresh registry: the keyword index drops what it does not list
            old = Registry(self._store, previous_registry, 0)
            infos, _ = old.documents()
            done = {d.doc_id: d.content_hash for d in self._docs.values()}
        return [(info.source, lambda info=info: _stored(old, info)) for info in
                sorted(infos.values(), key=lambda d: d.source) if done.get(info.doc_id) != info.content_hash]

    def finish_rebuild(self, results) -> bool:
        """Drop the old collections once every document was read again (failures to read included:
        they had no text to read); True if it did. A cancelled rebuild keeps them, to go on."""
        if any(r.status == "cancelled" for r in results):
            return False
        with self._writing():
            names = self._store.collection_names()
            for name in (self._previous_registry_name(), f"{self._collection}{PREVIOUS}"):
                if name in names:
                    self._store.delete_collection(name)
        return True


def _stored(registry: Registry, info):
    doc = registry.document(info.doc_id)
    if doc is None:
        raise IngestError(info.source, "was stored without its text, so it cannot be re-embedded; upload it again")
    return doc
