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


def _code_blocks(text: str) -> list[tuple[int, int]]:
    """(first line, line after) of each fenced code block, as CommonMark reads them."""
    if "```" not in text and "~~~" not in text:
        return []
    from markdown_it import MarkdownIt

    return [tuple(t.map) for t in MarkdownIt("commonmark").parse(text) if t.type == "fence" and t.map]


def _pieces(text: str, size: int) -> list[tuple[str, bool]]:
    """Sentences and lines to pack, each with whether it is code; a fenced code block that fits
    in a chunk is one piece, a longer one a piece per line, so that no chunk joins code lines."""
    lines = text.split("\n")
    pieces: list[tuple[str, bool]] = []
    done = 0
    for start, end in [*_code_blocks(text), (len(lines), len(lines))]:
        pieces += [(p, False) for p in _SENTENCE_END.split("\n".join(lines[done:start])) if p.strip()]
        block = "\n".join(lines[start:end]).rstrip()
        if block.strip():
            pieces += [(block, True)] if len(block) <= size else [(line, True) for line in block.split("\n")]
        done = end
    return pieces


def _split(text: str, size: int, overlap: int) -> list[str]:
    """Greedy packing of sentences up to `size`, carrying `overlap` characters over (never into or out of code)."""
    if len(text) <= size:
        return [text]
    chunks: list[str] = []
    current = ""
    after_code = False
    prose_from = 0  # where the text after the last code piece starts in `current`
    for piece, code in _pieces(text, size):
        while len(piece) > size:  # a sentence longer than a chunk is cut hard
            head, piece = piece[:size], piece[size - overlap:]
            if current:
                chunks.append(current)
                current = ""
            chunks.append(head)
        if code or after_code:  # code keeps its lines
            candidate = f"{current}\n{piece}" if current else piece
        else:
            candidate = f"{current} {piece}".strip() if current else piece
        if len(candidate) <= size:
            current, after_code = candidate, code
            prose_from = len(current) + 1 if code else prose_from
            continue
        chunks.append(current)
        if code or after_code:
            current, after_code = piece, code
            prose_from = len(current) + 1 if code else 0
            continue
        tail = current[max(len(current) - overlap, prose_from):] if overlap else ""
        prose_from = 0
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
