"""Batch triage: a CSV or JSON Lines upload of messages, classified off the request path, with progress.

A job is kept in Redis, so any API process can report on it:
  chatbot:api:job:ID          hash: status (queued, running, done, failed), total, done, created,
                              finished, key (the key id that started it), errors (JSON), error
  chatbot:api:job:ID:results  list of JSON results, in the upload's order
Jobs and results expire after a day.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import threading
import time
import uuid
from typing import Callable

import redis

from api.errors import ApiError
from chatbot.store.server import as_text
from chatbot.triage.triage import TIER_WEIGHT
from common.errors import ChatbotError, shown

log = logging.getLogger(__name__)
PREFIX = "chatbot:api:job"
MAX_ROWS = 10_000
KEEP = 86400
TEXT_COLUMNS = ("text", "message")
TIER_COLUMNS = ("customer_tier", "tier")


def parse_upload(name: str, content_type: str, data: bytes) -> tuple[list[dict], list[dict]]:
    """Rows ({"line", "id", "text", "customer_tier"}) and problems ({"line", "error"}) of a CSV or JSONL file.

    CSV (RFC 4180, read by the csv module) needs a `text` (or `message`) column; JSON Lines one
    object a line with `text`. `id` and `customer_tier` are optional. Raises ApiError 422 for a
    file that is neither, is not UTF-8, holds no message or more than MAX_ROWS.
    """
    lower, kind = name.lower(), content_type.split(";")[0].strip()
    name = shown(name)  # from here on the file's name is only quoted in messages
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiError(422, "invalid_upload", f"{name}: not UTF-8 text.") from None
    if lower.endswith((".jsonl", ".ndjson", ".json")) or kind in ("application/x-ndjson", "application/jsonl"):
        raw = _jsonl(text)
    elif lower.endswith(".csv") or kind in ("text/csv", "application/csv"):
        raw = _csv(name, text)
    else:
        raise ApiError(422, "invalid_upload", f"{name}: send a .csv or .jsonl file.")
    rows, problems = [], []
    for line, item, error in raw:
        if error:
            problems.append({"line": line, "error": error})
            continue
        given = next((item[c] for c in TEXT_COLUMNS if item.get(c)), "")
        message = given.strip() if isinstance(given, str) else ""
        tier = next((str(item[c]).strip().lower() for c in TIER_COLUMNS if item.get(c)), "standard")
        if not isinstance(given, str):  # JSON's {"text": {...}} or 5 is no message, not its Python repr
            problems.append({"line": line, "error": f"text is not a string: {json.dumps(given)[:40]}"})
        elif not message:
            problems.append({"line": line, "error": "no text"})
        elif tier not in TIER_WEIGHT:
            problems.append({"line": line, "error": f"unknown customer tier {shown(tier)!r}"})
        else:
            rows.append({"line": line, "id": str(item.get("id") or line), "text": message, "customer_tier": tier})
    if not rows:
        raise ApiError(422, "invalid_upload", f"{name}: no message to triage.", problems=problems[:20])
    if len(rows) > MAX_ROWS:
        raise ApiError(422, "invalid_upload", f"{name}: {len(rows):,} messages; at most {MAX_ROWS:,} a batch.")
    return rows, problems


def _jsonl(text: str):
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield line, None, f"not JSON ({exc.msg})"
            continue
        except RecursionError:
            yield line, None, "not JSON this desk reads (nested too deep)"
            continue
        yield (line, item, "") if isinstance(item, dict) else (line, None, "not a JSON object")


def _csv(name: str, text: str):
    # strict: a quote never closed is an error, not every later row swallowed into one message.
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if not any(c in columns for c in TEXT_COLUMNS):
            raise ApiError(422, "invalid_upload",
                           f"{name}: the CSV needs a `text` column (found: {shown(', '.join(columns))}).")
        for row in reader:
            yield reader.line_num, {(k or "").strip().lower(): v for k, v in row.items()}, ""
    except csv.Error as exc:
        raise ApiError(422, "invalid_upload", f"{name}: not RFC 4180 CSV from line {reader.line_num + 1}: {exc} "
                                              "(a quote that is not closed?).") from None


class BatchJobs:
    """Start batch jobs on a thread each, and read their progress and results."""

    def __init__(self, client: Callable[[], redis.Redis]):
        self._client = client

    def start(self, key_id: str, rows: list[dict], problems: list[dict],
              classify: Callable[[dict], dict]) -> str:
        job_id = uuid.uuid4().hex[:16]
        name = f"{PREFIX}:{job_id}"
        pipe = self._client().pipeline(transaction=True)
        pipe.hset(name, mapping={"status": "queued", "total": len(rows), "done": 0, "created": time.time(),
                                 "key": key_id, "errors": json.dumps(problems)})
        pipe.expire(name, KEEP)
        pipe.execute()
        threading.Thread(target=self._run, args=(job_id, rows, classify), name=f"batch-{job_id}", daemon=True).start()
        return job_id

    def _run(self, job_id: str, rows: list[dict], classify: Callable[[dict], dict]) -> None:
        name = f"{PREFIX}:{job_id}"
        client = self._client()
        client.hset(name, "status", "running")
        try:
            for row in rows:
                try:
                    found = {"id": row["id"], "line": row["line"], **classify(row)}
                except ChatbotError as exc:
                    found = {"id": row["id"], "line": row["line"], "error": str(exc)}
                pipe = self._client().pipeline(transaction=True)
                pipe.rpush(f"{name}:results", json.dumps(found, ensure_ascii=False))
                pipe.expire(f"{name}:results", KEEP)
                pipe.hincrby(name, "done", 1)
                pipe.execute()
            self._client().hset(name, mapping={"status": "done", "finished": time.time()})
        except Exception as exc:  # noqa: BLE001 - the job reports its failure instead of dying silently
            log.exception("Batch job %s failed", job_id)
            self._client().hset(name, mapping={"status": "failed", "error": f"{exc.__class__.__name__}: {exc}",
                                               "finished": time.time()})

    def get(self, job_id: str, key_id: str, *, admin: bool = False) -> dict:
        """A job's progress (and results so far); 404 for an unknown job or another key's job."""
        raw = {as_text(k): as_text(v) for k, v in self._client().hgetall(f"{PREFIX}:{job_id}").items()}
        if not raw or (raw["key"] != key_id and not admin):
            raise ApiError(404, "job_not_found", f"No batch job {shown(job_id)} (jobs are kept a day).")
        results = [json.loads(r) for r in self._client().lrange(f"{PREFIX}:{job_id}:results", 0, -1)]
        total, done = int(raw["total"]), int(raw["done"])
        return {"job_id": job_id, "status": raw["status"], "total": total, "done": done,
                "progress": round(done / total, 4) if total else 1.0, "problems": json.loads(raw["errors"]),
                "error": raw.get("error") or None, "results": results}
