"""What the Knowledge base page needs from `knowledge/`: upload limits, search choices, ingestion jobs."""

from __future__ import annotations

import re

from knowledge.chunking import ChunkSettings
from knowledge.fusion import FUSIONS
from knowledge.jobs import IngestionJob
from knowledge.loaders import MAX_FILE_BYTES, SUPPORTED
from knowledge.store import MODES, KnowledgeBase

# File types the uploader accepts, without the dot, and its size limit in megabytes.
UPLOAD_TYPES = [suffix.lstrip(".") for suffix in SUPPORTED]
MAX_UPLOAD_MB = MAX_FILE_BYTES // (1024 * 1024)
RETRIEVER_MODES = MODES
FUSION_METHODS = FUSIONS

__all__ = ["FUSION_METHODS", "MAX_UPLOAD_MB", "RETRIEVER_MODES", "UPLOAD_TYPES", "IngestionJob",
           "literal", "upload_job", "reindex_job"]

# What Streamlit's markdown would read as markup inside a line: emphasis, code, links, raw
# HTML and entities, strike-through, LaTeX, tables, colour and icon directives.
_MARKUP = re.compile(r"([\\`*_\[\]<>&~$|:#])")


def literal(text: str) -> str:
    """`text` (a file name, a title, an error) shown as itself inside Streamlit markdown."""
    return _MARKUP.sub(r"\\\1", " ".join(str(text).split()))


def upload_job(kb: KnowledgeBase, uploads: list[tuple[str, bytes]]) -> IngestionJob:
    """An ingestion of uploaded files, each a (name, content) pair; not started yet."""
    return IngestionJob(kb, uploads=uploads)


def reindex_job(kb: KnowledgeBase, size: int, overlap: int) -> IngestionJob:
    """Re-chunk and re-embed every document with new chunk settings; ValueError for bad settings."""
    return IngestionJob(kb, reindex=ChunkSettings(int(size), int(overlap)), force=True)
