"""Chunks respect their size and overlap, keep their heading, and hash by content."""

from __future__ import annotations

import pytest

from knowledge.chunking import ChunkSettings, chunk_document, content_hash
from knowledge.types import Document, Section


def _doc(text: str, heading: str = "Steps") -> Document:
    return Document(source="a.md", title="Guide", sections=[Section(heading, text)])


def test_long_section_is_split_within_size_with_overlap():
    sentences = [f"Sentence number {i} explains one more detail of the process." for i in range(60)]
    chunks = chunk_document(_doc(" ".join(sentences)), ChunkSettings(size=300, overlap=80))
    assert len(chunks) > 5
    assert all(len(c.text) <= 300 for c in chunks)
    # Each chunk after the first starts with words carried over from the previous one.
    for before, after in zip(chunks, chunks[1:]):
        assert after.text.split()[0] in before.text
    assert all(c.heading == "Steps" for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[0].embedding_text().startswith("Guide > Steps\n")


def test_short_sections_stay_whole():
    doc = Document("b.md", "T", [Section("One", "Short text."), Section("Two", "Also short.")])
    chunks = chunk_document(doc)
    assert [(c.heading, c.text) for c in chunks] == [("One", "Short text."), ("Two", "Also short.")]


def test_content_hash_changes_only_with_content():
    assert content_hash(_doc("same")) == content_hash(_doc("same"))
    assert content_hash(_doc("same")) != content_hash(_doc("changed"))


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError):
        ChunkSettings(size=50)
    with pytest.raises(ValueError):
        ChunkSettings(size=400, overlap=300)
