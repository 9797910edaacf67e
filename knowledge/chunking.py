"""Split documents into overlapping chunks that keep their heading."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from knowledge.types import Chunk, Document

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class ChunkSettings:
    """Chunk size and overlap, in characters."""

    size: int = 900
    overlap: int = 150

    def __post_init__(self) -> None:
        if self.size < 100:
            raise ValueError("chunk size must be at least 100 characters")
        if not 0 <= self.overlap < self.size // 2:
            raise ValueError("chunk overlap must be between 0 and half the chunk size")


def content_hash(doc: Document) -> str:
    """SHA-256 of a document's title and text: same content, same hash."""
    digest = hashlib.sha256()
    digest.update(doc.title.encode())
    for section in doc.sections:
        digest.update(b"\x1f" + section.heading.encode() + b"\x1e" + section.text.encode())
    return digest.hexdigest()


def doc_id_for(source: str) -> str:
    """A stable id for a source name, so re-ingesting a file replaces it."""
    return hashlib.sha1(source.encode()).hexdigest()[:16]


def _split(text: str, size: int, overlap: int) -> list[str]:
    """Greedy packing of sentences up to `size`, carrying `overlap` characters over."""
    if len(text) <= size:
        return [text]
    pieces = [p for p in _SENTENCE_END.split(text) if p.strip()]
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        while len(piece) > size:  # a sentence longer than a chunk is cut hard
            head, piece = piece[:size], piece[size - overlap:]
            if current:
                chunks.append(current)
                current = ""
            chunks.append(head)
        candidate = f"{current} {piece}".strip() if current else piece
        if len(candidate) <= size:
            current = candidate
            continue
        chunks.append(current)
        tail = current[-overlap:] if overlap else ""
        # Start the overlap at a word boundary.
        tail = tail[tail.find(" ") + 1:] if " " in tail else tail
        current = f"{tail} {piece}".strip()
        if len(current) > size:
            chunks.append(tail)
            current = piece
    if current:
        chunks.append(current)
    return chunks


def chunk_document(doc: Document, settings: ChunkSettings = ChunkSettings()) -> list[Chunk]:
    """Chunks for every section of a document, numbered in reading order."""
    doc_id = doc_id_for(doc.source)
    chunks: list[Chunk] = []
    for section in doc.sections:
        for text in _split(section.text, settings.size, settings.overlap):
            chunks.append(
                Chunk(
                    doc_id=doc_id,
                    source=doc.source,
                    title=doc.title,
                    heading=section.heading,
                    index=len(chunks),
                    text=text,
                    category=doc.category,
                )
            )
    return chunks
