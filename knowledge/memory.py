"""Handing freed memory back to the operating system after a large job.

glibc's malloc keeps freed heap pages for the next allocation, so a process that embedded a
large upload stays as large as its peak long after the job ends, which on a host that counts
resident memory (Streamlit Community Cloud stops an app above 690 MB) is memory lost to every
later job. `malloc_trim(0)` returns the free pages at the top of every malloc arena and the
whole free pages inside them (glibc 2.8+, malloc_trim(3)). Measured after an upload
(BENCHMARKS.md, "Ingestion memory"): about 65 MB of the embedder's freed working memory came back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from functools import lru_cache

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _libc():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "malloc_trim") else None  # musl and macOS have none
    except OSError:
        return None


def give_back_memory() -> bool:
    """Return the C heap's free pages to the OS; True if some were, False if none or not glibc."""
    libc = _libc()
    if libc is None:
        return False
    try:
        return bool(libc.malloc_trim(0))
    except OSError as exc:  # never worth failing a finished job for
        log.debug("malloc_trim failed: %s", exc)
        return False
