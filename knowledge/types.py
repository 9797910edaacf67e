"""Value types of the knowledge base: documents as loaded and chunks as stored."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Section:
    """A run of text under one heading path (e.g. "Refunds > How long it takes")."""

    heading: str
    text: str


@dataclass
class Document:
    """A loaded source file, before chunking."""

    source: str
    title: str
    sections: list[Section]
    category: str = ""
    size_bytes: int = 0

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.sections)


@dataclass
class Chunk:
    """A piece of a document as stored: its text, where it came from, and its heading."""

    doc_id: str
    source: str
    title: str
    heading: str
    index: int
    text: str
    category: str = ""
    version: str = ""

    @property
    def id(self) -> str:
        # The version is in the id: a new version is written beside the old one, never over it.
        return f"{self.doc_id}:{self.version}:{self.index}" if self.version else f"{self.doc_id}:{self.index}"

    def embedding_text(self) -> str:
        # Title and heading give a short chunk the context its words lack.
        context = self.title if not self.heading or self.heading == self.title else f"{self.title} > {self.heading}"
        return f"{context}\n{self.text}"
