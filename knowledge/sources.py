"""Where ingested documents come from: files and folders on disk, and uploads, each under a clean
name; names that would make two files one document are refused by name."""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Callable, Iterable, Sequence

from common.errors import IngestError
from knowledge.loaders import clean_name, load_path, visible
from knowledge.types import Document

Source = tuple[str, Callable[[], Document]]


def path_sources(paths: Iterable[str | Path]) -> list[Source]:
    """(name, loader) for every file under `paths`, each file once, named as `ingest_paths` says."""
    named: dict[str, Path] = {}
    seen: set[Path] = set()
    sources: list[Source] = []
    for p in map(Path, paths):
        found = [(f, f.relative_to(p)) for f in sorted(p.rglob("*")) if f.is_file()] if p.is_dir() else [(p, p.name)]
        for file, relative in found:
            real = file.resolve()
            if real in seen:  # the same file reached twice (a folder and a file in it)
                continue
            seen.add(real)
            name = clean_name(PurePath(relative).as_posix())
            first = named.setdefault(name, file)
            if first is file:
                sources.append((name, lambda f=file, n=name: load_path(f, n)))
            else:
                sources.append((name, lambda f=file, n=name, o=first: _clash(f, n, o)))
    return sources


def name_clashes(raw_names: Sequence[str]) -> list[str]:
    """For each uploaded file name, why it is refused ('' if it is not): a name that becomes another
    file's of the same upload once cleaned (a NUL byte, control characters, a direction override or
    a path removed) would silently replace that file, so the later one is refused, the first kept.
    The same name twice (one file chosen twice) is no clash: the later copy wins, as for paths."""
    first: dict[str, str] = {}
    reasons = []
    for raw in raw_names:
        name = clean_name(raw)
        earlier = first.setdefault(name, raw)
        reasons.append("" if earlier == raw else
                       f"has the same name as another file of this upload once the characters a name cannot show "
                       f"(control characters, a NUL byte, a direction override, folders) are removed: {name}; "
                       "rename one of them")
    return reasons


def refused(name: str, reason: str) -> Callable[[], Document]:
    def load() -> Document:
        raise IngestError(name, reason)
    return load


def _clash(file: Path, name: str, first: Path) -> Document:
    raise IngestError(name, f"{visible(str(file))} and {visible(str(first))} would both be stored as {name}; "
                            "ingest the folder that holds both, so each keeps its folder in its name")
