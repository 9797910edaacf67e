"""What the Knowledge base page needs from `knowledge/`: upload limits, search choices, ingestion jobs."""

from __future__ import annotations

import re

from knowledge.chunking import ChunkSettings
from knowledge.fusion import FUSIONS
from knowledge.jobs import IngestionJob, estimate_chunks
from knowledge.loaders import MAX_FILE_BYTES, SUPPORTED
from knowledge.store import MODES, KnowledgeBase

# File types the uploader accepts, without the dot, and its size limit in megabytes.
UPLOAD_TYPES = [suffix.lstrip(".") for suffix in SUPPORTED]
MAX_UPLOAD_MB = MAX_FILE_BYTES // (1024 * 1024)
RETRIEVER_MODES = MODES
FUSION_METHODS = FUSIONS

__all__ = ["FUSION_METHODS", "MAX_UPLOAD_MB", "RETRIEVER_MODES", "UPLOAD_TYPES", "IngestionJob",
           "held_uploads", "job_progress", "large_uploads", "literal", "model_notice", "rebuild_job", "reindex_job",
           "search_notice", "upload_job"]

# An upload estimated at more chunks than this is confirmed first: at the embedding rate measured
# on 2 shared cores (about 50 chunks/s, BENCHMARKS.md "Knowledge base scale") it takes over 40 s.
LARGE_UPLOAD_CHUNKS = 2000
EMBEDDED_CHUNKS_PER_S = 50

# What Streamlit's markdown would read as markup inside a line: emphasis, code, links, raw
# HTML and entities, strike-through, LaTeX, tables, colour and icon directives.
_MARKUP = re.compile(r"([\\`*_\[\]<>&~$|:#])")


def literal(text: str) -> str:
    """`text` (a file name, a title, an error) shown as itself inside Streamlit markdown."""
    return _MARKUP.sub(r"\\\1", " ".join(str(text).split()))


def upload_job(kb: KnowledgeBase, uploads: list[tuple[str, bytes]], allow: list[str] = ()) -> IngestionJob:
    """An ingestion of uploaded files, each a (name, content) pair; not started yet. Files named in
    `allow` are ingested even if they look like junk (the admin confirmed them)."""
    return IngestionJob(kb, uploads=uploads, allow=allow)


def held_uploads(job: IngestionJob) -> list[tuple[str, bytes]]:
    """The (name, content) uploads a finished job held back as junk, to confirm and send again."""
    if job.running or job.kind != "upload":
        return []
    return [(name, data) for f, (name, data) in zip(job.files, job.uploads) if f.state == "held"]


def reindex_job(kb: KnowledgeBase, size: int, overlap: int) -> IngestionJob:
    """Re-chunk and re-embed every document with new chunk settings; ValueError for bad settings."""
    return IngestionJob(kb, reindex=ChunkSettings(int(size), int(overlap)), force=True)


def rebuild_job(kb: KnowledgeBase) -> IngestionJob:
    """Re-embed every document with the running embedding model; not started yet."""
    return IngestionJob(kb, rebuild=True)


def model_notice(kb: KnowledgeBase) -> str:
    """Why the knowledge base needs a rebuild with the running embedding model ('' when it does not)."""
    if kb.model_change is not None:
        return kb.model_change.message
    if kb.rebuild_unfinished:
        return ("A rebuild with this embedding model stopped before the end: the documents not yet re-embedded "
                "are missing from search until it goes on.")
    return ""


def search_notice(kb: KnowledgeBase) -> str:
    """What the chat says while search is degraded ('' when it is not)."""
    if kb.model_change is not None:
        return ("Search is degraded: the knowledge base was built with another embedding model, so answers use "
                "keyword search only until an admin rebuilds it on the Knowledge base page.")
    if kb.degraded:
        return f"Search is degraded: vector search failed, so answers use keyword search only ({kb.degraded})."
    return ""


def duration(seconds: float) -> str:
    """A rough human duration: "about 40 s", "about 7 min"."""
    return f"about {max(1, round(seconds))} s" if seconds < 90 else f"about {round(seconds / 60)} min"


def large_uploads(kb: KnowledgeBase, uploads: list[tuple[str, int]]) -> list[str]:
    """A warning line for each (name, size in bytes) upload big enough to take a while."""
    warnings = []
    for name, size in uploads:
        chunks = estimate_chunks(size, kb.chunking)
        if chunks >= LARGE_UPLOAD_CHUNKS:
            warnings.append(f"{name} is {size / 1_000_000:.1f} MB, about {chunks:,} chunks: embedding them "
                            f"takes {duration(chunks / EMBEDDED_CHUNKS_PER_S)} here.")
    return warnings


def job_progress(job: IngestionJob) -> tuple[float, str]:
    """The running job's progress as a fraction and a line: files, chunks done of expected, time left."""
    total, expected = len(job.files), job.chunks_expected
    if job.cancelling:
        return (job.chunks_written / expected if expected else 0.0), "Cancelling…"
    line = f"{job.kind.capitalize()}: {job.finished}/{total} files · {job.chunks_written:,} of {expected:,} chunks"
    left = job.seconds_left()
    if left is not None:
        line += f" · {duration(left)} left"
    elif job.chunks_written == 0 and job.running:
        line += " · reading and chunking"
    return (min(1.0, job.chunks_written / expected) if expected else 0.0), line
