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


CODE = "```bash\n" + "\n".join(f"# step {i}\nnimbusctl run --step {i}" for i in range(6)) + "\n```"
PROSE = " ".join(f"Sentence {i} says one more thing about the hub." for i in range(12))


def test_a_fenced_code_block_that_fits_stays_whole_in_one_chunk():
    chunks = [c.text for c in chunk_document(_doc(f"{PROSE}\n\n{CODE}\n\n{PROSE}"), ChunkSettings(size=400, overlap=80))]
    holding = [c for c in chunks if "```" in c]
    assert len(holding) == 1 and holding[0].startswith(CODE + "\n")
    # No chunk carries a piece of the code over as its overlap.
    assert sum("nimbusctl" in c for c in chunks) == 1


def test_a_code_block_longer_than_a_chunk_is_cut_between_its_lines():
    code = "```\n" + "\n".join(f"nimbusctl configure --option-{i} value-{i}" for i in range(20)) + "\n```"
    chunks = [c.text for c in chunk_document(_doc(code), ChunkSettings(size=200, overlap=40))]
    assert all(len(c) <= 200 for c in chunks)
    assert "\n".join(chunks) == code  # every line whole, in order, none joined to another
