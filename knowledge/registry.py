"""The documents registry, kept in a Chroma collection beside the chunks.

It is the commit point of every change: a document's chunks are written under a
fresh version first, and become visible only when the registry names that version.
Living in Chroma, it is shared by every app replica that uses the same server;
each replica's keyword index is a local copy it brings up to date from here.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
import zlib
from dataclasses import asdict, dataclass, fields

import numpy as np

from knowledge.types import Document, Section

STATE_ID = "__state__"


@dataclass
class DocumentInfo:
    """A row of the documents list."""

    doc_id: str
    source: str
    title: str
    category: str
    chunks: int
    size_bytes: int
    content_hash: str
    ingested_at: float
    version: str = ""
    chunk_size: int = 0
    chunk_overlap: int = 0


def new_token() -> str:
    """A fresh random version or generation token."""
    return uuid.uuid4().hex[:12]


def pack_document(doc: Document) -> str:
    """The loaded document, compressed, so it can be re-chunked without its file."""
    data = {"title": doc.title, "category": doc.category, "size_bytes": doc.size_bytes,
            "sections": [[s.heading, s.text] for s in doc.sections]}
    return base64.b64encode(zlib.compress(json.dumps(data).encode(), 6)).decode()


def unpack_document(source: str, packed: str) -> Document:
    """The inverse of pack_document."""
    data = json.loads(zlib.decompress(base64.b64decode(packed)))
    return Document(source=source, title=data["title"], category=data["category"], size_bytes=data["size_bytes"],
                    sections=[Section(h, t) for h, t in data["sections"]])


class Registry:
    """Documents, tombstones of deleted ones and the generation token, in one Chroma collection.

    A document's record carries its title's vector; the other records carry zeros.
    """

    def __init__(self, client, name: str, dimension: int):
        self._col = client.get_or_create_collection(name, embedding_function=None)
        # Records other than documents carry zeros of the collection's own dimension: a registry
        # written with another embedding model still takes deletions until it is rebuilt.
        got = self._col.get(ids=[STATE_ID], include=["embeddings"])
        if got["ids"]:
            dimension = len(got["embeddings"][0])
        self._zeros = np.zeros(dimension, dtype=np.float32)

    def rename(self, name: str) -> None:
        """Keep this registry under another name (a rebuild keeps the old one to read from)."""
        self._col.modify(name=name)

    def state(self) -> dict:
        """The state record: generation token and chunk settings ({} when nothing was ever stored)."""
        got = self._col.get(ids=[STATE_ID], include=["metadatas"])
        return dict(got["metadatas"][0]) if got["ids"] else {}

    def documents(self) -> tuple[dict[str, DocumentInfo], dict[str, np.ndarray]]:
        """Every committed document by id, and each one's title vector."""
        got = self._col.get(where={"kind": "document"}, include=["metadatas", "embeddings"])
        names = {f.name for f in fields(DocumentInfo)}
        infos = {
            rid: DocumentInfo(**{k: v for k, v in meta.items() if k in names})
            for rid, meta in zip(got["ids"], got["metadatas"])
        }
        vectors = {rid: np.asarray(v, dtype=np.float32) for rid, v in zip(got["ids"], got["embeddings"])}
        return infos, vectors

    def document(self, doc_id: str) -> Document | None:
        """A committed document's loaded sections, for re-chunking."""
        got = self._col.get(ids=[doc_id], include=["metadatas", "documents"])
        if not got["ids"] or got["metadatas"][0].get("kind") != "document" or not got["documents"][0]:
            return None
        return unpack_document(got["metadatas"][0]["source"], got["documents"][0])

    def commit(
        self,
        generation: str,
        settings: dict,
        documents: list[tuple[DocumentInfo, Document | None, np.ndarray]] = (),
        removed: list[tuple[str, str]] = (),
    ) -> None:
        """One upsert: new or changed documents (info, loaded document, title vector), tombstones for
        removed (doc_id, version), and the new generation."""
        ids, metas, texts = [STATE_ID], [{"kind": "state", "generation": generation, **settings}], [""]
        vectors = [self._zeros]
        for info, doc, title_vector in documents:
            ids.append(info.doc_id)
            metas.append({"kind": "document", **asdict(info)})
            texts.append(pack_document(doc) if doc is not None else "")
            vectors.append(np.asarray(title_vector, dtype=np.float32))
        for doc_id, version in removed:
            ids.append(doc_id)
            metas.append({"kind": "removed", "doc_id": doc_id, "version": version, "removed_at": time.time()})
            texts.append("")
            vectors.append(self._zeros)
        self._col.upsert(ids=ids, embeddings=np.stack(vectors), metadatas=metas, documents=texts)

    def forget(self, doc_ids: list[str]) -> None:
        """Drop tombstones once their chunks are gone."""
        if doc_ids:
            self._col.delete(ids=list(doc_ids), where={"kind": "removed"})

    def removed(self) -> list[tuple[str, str, float]]:
        """Tombstones: (doc_id, version, removed_at) of deletions whose chunks may remain."""
        got = self._col.get(where={"kind": "removed"}, include=["metadatas"])
        return [(m["doc_id"], m.get("version", ""), float(m["removed_at"])) for m in got["metadatas"]]

