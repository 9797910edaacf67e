"""The prompt version store: immutable versions, production and draft labels, and an audit log.

On disk (`<data_dir>/prompts/`):

    versions/<name>/v0001.json   one immutable version: text, SHA-256, author, time, message
    index.json                   labels per template: production, draft, latest (replaced atomically)
    events.jsonl                 every save, publish and rollback, appended
    .lock                        serialises writers across processes (flock)

Every write goes to a temporary file first and is then linked or renamed into place, so a
reader never sees half a file and a crash never leaves a broken version behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from common.errors import ChatbotError, PromptNotFound, StaleVersionError, shown
from common.jsonl import json_lines
from chatbot.prompts.template import sha256_text

LABELS = ("production", "draft")


@dataclass(frozen=True)
class VersionInfo:
    """One saved version of a template."""

    name: str
    version: int
    sha256: str
    author: str
    created_at: float
    message: str
    base_version: int
    text: str

    def to_dict(self) -> dict:
        return asdict(self)


class PromptStore:
    """Versions and labels; subclasses keep them in memory or in a directory."""

    def __init__(self) -> None:
        self._thread_lock = threading.RLock()

    # -- primitives a subclass provides ---------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            yield

    def _index(self, copy: bool = True) -> dict:
        """The labels of every template; `copy=False` for a read that changes nothing."""
        raise NotImplementedError

    def _write_index(self, index: dict) -> None:
        raise NotImplementedError

    def _numbers(self, name: str) -> list[int]:
        raise NotImplementedError

    def _read(self, name: str, version: int) -> dict | None:
        raise NotImplementedError

    def _create(self, record: dict) -> None:
        """Write a new version; FileExistsError when that number is taken."""
        raise NotImplementedError

    def _log(self, event: dict) -> None:
        raise NotImplementedError

    def events(self, name: str | None = None) -> list[dict]:
        """Saves, publishes and rollbacks, oldest first."""
        raise NotImplementedError

    # -- reading ----------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every template with at least one version."""
        return sorted(self._index(copy=False).get("templates", {}))

    def labels(self, name: str) -> dict[str, int]:
        """{"production": v, "draft": v, "latest": v} for a template; empty if unknown."""
        return dict(self._index(copy=False).get("templates", {}).get(name, {}))

    def production(self, name: str) -> int | None:
        """The version the chat uses, or None for an unknown template."""
        return self._index(copy=False).get("templates", {}).get(name, {}).get("production")

    def version(self, name: str, version: int) -> VersionInfo:
        """One version; PromptNotFound if it does not exist."""
        version = int(version)
        # `save` numbers a template's versions 1, 2, 3...: a number past the latest names none and is
        # not looked up, as the file store would make it a file name (10**300's is too long for any
        # file system: an OSError, not a version that does not exist).
        record = self._read(name, version) if 1 <= version <= self.labels(name).get("latest", 0) else None
        if record is None:
            known = self._numbers(name)
            if not known:
                raise PromptNotFound(f"No prompt template named '{shown(name)}'.")
            raise PromptNotFound(f"'{name}' has no version {shown(version)}; it has v1 to v{max(known)}.")
        if sha256_text(record["text"]) != record["sha256"]:
            # Versions are immutable: a changed file is damage, never an edit to honour.
            raise ChatbotError(f"Version {version} of '{name}' does not match its SHA-256; the file was altered.")
        return VersionInfo(**{k: record[k] for k in VersionInfo.__dataclass_fields__})

    def history(self, name: str) -> list[VersionInfo]:
        """Every version of a template, newest first."""
        numbers = self._numbers(name)
        if not numbers:
            raise PromptNotFound(f"No prompt template named '{shown(name)}'.")
        return [self.version(name, v) for v in sorted(numbers, reverse=True)]

    # -- writing ----------------------------------------------------------------------------------
    def save(self, name: str, text: str, *, author: str, message: str, base_version: int,
             publish: bool = False) -> VersionInfo:
        """Add a version after `base_version` (0 for a new template); refused if someone saved since."""
        with self._locked():
            numbers = self._numbers(name)
            latest = max(numbers, default=0)
            if base_version != latest:
                raise self._stale(name, base_version, latest)
            record = {
                "name": name, "version": latest + 1, "sha256": sha256_text(text), "author": author,
                "created_at": time.time(), "message": message, "base_version": base_version, "text": text,
            }
            try:
                self._create(record)
            except FileExistsError:
                # Another writer took the number between our read and our write.
                raise self._stale(name, base_version, latest + 1) from None
            index = self._index()
            entry = index.setdefault("templates", {}).setdefault(name, {})
            previous = entry.get("production")
            entry.update(latest=latest + 1, draft=latest + 1)
            if publish or previous is None:
                entry["production"] = latest + 1
            self._write_index(index)
            self._log({"action": "save", "name": name, "version": latest + 1, "author": author,
                       "message": message, "published": entry["production"] == latest + 1})
            return self.version(name, latest + 1)

    def set_label(self, name: str, label: str, version: int, *, author: str, action: str = "publish",
                  expected: int | None = None) -> int | None:
        """Point `label` at an existing version; returns the version it pointed at before."""
        if label not in LABELS:
            raise ValueError(f"unknown label {label!r}")
        with self._locked():
            self.version(name, version)  # must exist
            index = self._index()
            entry = index.setdefault("templates", {}).setdefault(name, {})
            previous = entry.get(label)
            if expected is not None and previous != expected:
                raise StaleVersionError(
                    f"{label.capitalize()} of '{name}' moved to v{previous} since you looked (you saw "
                    f"v{expected}); nothing was changed. Check the history and try again.",
                    base_version=expected, latest_version=previous or 0,
                )
            entry[label] = int(version)
            self._write_index(index)
            self._log({"action": action, "name": name, "label": label, "version": int(version),
                       "from": previous, "author": author})
            return previous

    def _stale(self, name: str, base: int, latest: int) -> StaleVersionError:
        if base == 0:
            message = f"A template named '{name}' already exists (v{latest}); nothing was saved."
        else:
            who = ""
            record = self._read(name, latest)
            if record:
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(record["created_at"]))
                who = f" by {record['author']} at {when} (\"{record['message']}\")"
            message = (
                f"'{name}' was saved as v{latest}{who} after you opened v{base}. Nothing was saved and your "
                f"text is kept: compare it with v{latest}, merge, then save again."
            )
        return StaleVersionError(message, base_version=base, latest_version=latest)


class MemoryPromptStore(PromptStore):
    """Versions in a dictionary: for tests and for a library built without a data directory."""

    def __init__(self) -> None:
        super().__init__()
        self._records: dict[str, dict[int, dict]] = {}
        self._index_data: dict = {"templates": {}}
        self._events: list[dict] = []

    def _index(self, copy: bool = True) -> dict:
        return _copy_index(self._index_data) if copy else self._index_data

    def _write_index(self, index: dict) -> None:
        self._index_data = _copy_index(index)

    def _numbers(self, name: str) -> list[int]:
        return list(self._records.get(name, {}))

    def _read(self, name: str, version: int) -> dict | None:
        return self._records.get(name, {}).get(version)

    def _create(self, record: dict) -> None:
        versions = self._records.setdefault(record["name"], {})
        if record["version"] in versions:
            raise FileExistsError(record["version"])
        versions[record["version"]] = dict(record)

    def _log(self, event: dict) -> None:
        self._events.append({"time": time.time(), **event})

    def events(self, name: str | None = None) -> list[dict]:
        return [dict(e) for e in self._events if name is None or e["name"] == name]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(folder: Path, data: bytes) -> str:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        # Prompts are not secrets; readable like the rest of the data directory (mkstemp makes 0600).
        os.fchmod(fd, 0o644)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


class FilePromptStore(PromptStore):
    """Versions as files in a directory that several server processes may share."""

    def __init__(self, root: Path):
        super().__init__()
        self.root = Path(root)
        (self.root / "versions").mkdir(parents=True, exist_ok=True)
        self._index_path = self.root / "index.json"
        self._events_path = self.root / "events.jsonl"
        self._cache_key: tuple | None = None
        self._cache: dict = {"templates": {}}
        self._records: dict[tuple[str, int], dict] = {}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # The thread lock orders this process's threads; flock orders the processes.
        with self._thread_lock, open(self.root / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _index(self, copy: bool = True) -> dict:
        # One stat per read: another process's publish is seen on the next render. Writers
        # (copy=True, under the lock) always read the file itself.
        try:
            st = self._index_path.stat()
        except FileNotFoundError:
            return {"templates": {}}
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._thread_lock:
            if copy or key != self._cache_key:
                self._cache = json.loads(self._index_path.read_text(encoding="utf-8"))
                self._cache_key = key
            return _copy_index(self._cache) if copy else self._cache

    def _write_index(self, index: dict) -> None:
        tmp = _write_temp(self.root, json.dumps(index, indent=1, sort_keys=True).encode())
        os.replace(tmp, self._index_path)
        _fsync_dir(self.root)

    def _folder(self, name: str) -> Path:
        return self.root / "versions" / name

    def _numbers(self, name: str) -> list[int]:
        folder = self._folder(name)
        if not folder.is_dir():
            return []
        return [int(p.stem[1:]) for p in folder.glob("v*.json") if p.stem[1:].isdigit()]

    def _read(self, name: str, version: int) -> dict | None:
        cached = self._records.get((name, version))
        if cached is not None:
            return cached
        try:
            record = json.loads((self._folder(name) / f"v{version:04d}.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        self._records[(name, version)] = record  # immutable, so cached for good
        return record

    def _create(self, record: dict) -> None:
        folder = self._folder(record["name"])
        folder.mkdir(parents=True, exist_ok=True)
        tmp = _write_temp(folder, json.dumps(record, indent=1, ensure_ascii=False).encode("utf-8"))
        try:
            # link() refuses an existing name: creation and the uniqueness check are one step.
            os.link(tmp, folder / f"v{record['version']:04d}.json")
        finally:
            os.unlink(tmp)
        _fsync_dir(folder)

    def _log(self, event: dict) -> None:
        line = json.dumps({"time": time.time(), **event}, ensure_ascii=False) + "\n"
        with open(self._events_path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def events(self, name: str | None = None) -> list[dict]:
        try:
            text = self._events_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        out = []
        for _, line in json_lines(text):
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash; the versions and index are the record
            if name is None or event.get("name") == name:
                out.append(event)
        return out


def _copy_index(index: dict) -> dict:
    return {**index, "templates": {k: dict(v) for k, v in index.get("templates", {}).items()}}
