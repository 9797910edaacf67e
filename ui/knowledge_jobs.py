"""What the Knowledge base page needs from `knowledge/`: upload limits, search choices, ingestion jobs."""

from __future__ import annotations

import re

from common.wording import plural
from knowledge.chunking import ChunkSettings
from knowledge.fusion import FUSIONS
from knowledge.jobs import IngestionJob, estimate_chunks
from knowledge.loaders import MAX_FILE_BYTES, SUPPORTED
from knowledge.store import MODES, KnowledgeBase

# File types the uploader accepts, without the dot.
UPLOAD_TYPES = [suffix.lstrip(".") for suffix in SUPPORTED]
# The uploader's own size limit, in megabytes. A file over it is refused by the browser before it is
# sent, so the page never hears of it; the limit is set above the ingest limit (MAX_FILE_BYTES, 50 MB) so
# that a file too big to ingest still reaches the server and is refused by name in the per-file results.
# 200 MB is Streamlit's default server.maxUploadSize, the most one request may carry anyway.
MAX_UPLOAD_MB = max(200, MAX_FILE_BYTES // (1024 * 1024))
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
    """Warning lines when (name, size in bytes) uploads make enough chunks, together, to take a while.

    The chunks of every file count (twenty files of 150 chunks take as long as one of 3,000): the
    largest files are named with their estimates, then the total and how long embedding it takes.
    Files over the ingest limit are left out (they are refused, not embedded). [] for a quick upload.
    """
    sized = [(name, size, estimate_chunks(size, kb.chunking)) for name, size in uploads if size <= MAX_FILE_BYTES]
    total = sum(chunks for _, _, chunks in sized)
    if total < LARGE_UPLOAD_CHUNKS:
        return []
    largest = sorted(sized, key=lambda item: -item[2])[:5]
    lines = [f"{name} is {size / 1_000_000:.1f} MB, about {plural(chunks, 'chunk')}." for name, size, chunks in largest]
    lines.append(f"In all about {plural(total, 'chunk')} from {plural(len(sized), 'file')}: embedding them takes "
                 f"{duration(total / EMBEDDED_CHUNKS_PER_S)} here.")
    return lines


def job_progress(job: IngestionJob) -> tuple[float, str]:
    """The running job's progress as a fraction and a line: files, chunks done of expected, time left."""
    total, expected = len(job.files), job.chunks_expected
    if job.cancelling:
        return (job.chunks_written / expected if expected else 0.0), "Cancelling…"
    line = f"{job.kind.capitalize()}: {job.finished}/{plural(total, 'file')} · {job.chunks_written:,} of {plural(expected, 'chunk')}"
    left = job.seconds_left()
    if left is not None:
        line += f" · {duration(left)} left"
    elif job.chunks_written == 0 and job.running:
        line += " · reading and chunking"
    return (min(1.0, job.chunks_written / expected) if expected else 0.0), line
