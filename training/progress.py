"""The JSON-lines progress file a job writes and the page reads, and small file helpers."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from common.jsonl import json_lines

PROGRESS_FILE = "progress.jsonl"
RESULT_FILE = "result.json"
STATUS_FILE = "status.json"
LOG_FILE = "train.log"
DATASET_FILE = "dataset.json"  # what the dataset left out before the job (counts), when anything


def _clean(value: Any) -> Any:
    # NaN and infinities are not JSON; a missing value reads better than a crash in the reader.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class ProgressWriter:
    """Appends one JSON object per line and flushes each, so a reader sees every event at once."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append an event; returns what was written."""
        record = {"event": event, "time": round(time.time(), 3), **{k: _clean(v) for k, v in fields.items()}}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
        return record


def read_progress(path: str | Path) -> list[dict[str, Any]]:
    """Every complete event in a progress file; a line still being written is skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    events = []
    for _, line in json_lines(text):
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON atomically, so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: str | Path) -> dict[str, Any] | None:
    """A JSON object from a file, or None when there is none (yet)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def tail(path: str | Path, lines: int = 40, max_bytes: int = 64_000) -> str:
    """The last lines of a text file, reading only its end."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    # Progress bars redraw with carriage returns; keep only the last state of each line.
    rows = [row.rsplit("\r", 1)[-1] for row in text.splitlines()]
    return "\n".join(rows[-lines:])


def format_duration(seconds: float | None) -> str:
    """1:05:09, 4:07 or 12s; a dash when unknown."""
    if seconds is None:
        return "-"
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}" if minutes else f"{secs}s"
