"""Batch triage: a CSV or JSON Lines upload of messages, classified off the request path, with progress.

A job is kept in Redis, so any API process can report on it:
  chatbot:api:job:ID          hash: status (queued, running, done, failed, cancelled), total, done, created,
                              finished, key (the key id that started it), errors (JSON), error,
                              heartbeat (when its runner last said it is alive), cancel (when a cancel was asked)
  chatbot:api:job:ID:results  list of JSON results, in the upload's order
Jobs and results expire after a day.

A job runs on a thread of the API process that took the upload; its rows live only there. A
process that stops (a restart, a crash) takes its runners with it: their jobs would read `running`
for good. Each runner's heartbeat, refreshed by a thread beside it whatever a row takes, says it is
alive; a job whose heartbeat is older than the lease is reported `interrupted`, with what it did.
It is not resumed: its rows are gone with the process, and only the client has them again.
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
from api.schemas import UNPAIRED, first_unpaired
from chatbot.store.server import as_text
from chatbot.triage.triage import TIER_WEIGHT
from chatbot.turn.steps import clean_message
from common.errors import ChatbotError, shown

log = logging.getLogger(__name__)
PREFIX = "chatbot:api:job"
MAX_ROWS = 10_000
KEEP = 86400
TEXT_COLUMNS = ("text", "message")
TIER_COLUMNS = ("customer_tier", "tier")
RUNNING = ("queued", "running")  # the statuses of a job whose runner has not finished
HEARTBEAT_SECONDS = 5.0
# A runner silent this long is gone (its process stopped): four missed heartbeats. The heartbeat is a
# thread of its own, so a slow row does not hold it back.
LEASE_SECONDS = 20.0
CANCEL_WAIT_SECONDS = 5.0  # how long a cancel waits for the runner to stop between two rows
PAGE, MAX_PAGE = 100, 1000  # results a poll returns by default, and at most
# KEYS: job. ARGV: now. Asks a job's runner to stop: 1 when it still runs, 0 when it has finished.
CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'cancel', ARGV[1])
return 1
"""


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
        # JSON can spell a lone surrogate; the JSON API refuses it (api/schemas.py), and cleaning would
        # drop it without a word (it is no character): the row is refused, naming where it is.
        if (broken := first_unpaired(item)) is not None:
            where, escape = broken
            problems.append({"line": line, "error": f"{shown(where or 'row')}: {UNPAIRED.format(escape=escape)}"})
            continue
        given = next((item[c] for c in TEXT_COLUMNS if item.get(c)), "")
        message = given.strip() if isinstance(given, str) else ""
        tier = next((str(item[c]).strip().lower() for c in TIER_COLUMNS if item.get(c)), "standard")
        if not isinstance(given, str):  # JSON's {"text": {...}} or 5 is no message, not its Python repr
            problems.append({"line": line, "error": f"text is not a string: {json.dumps(given)[:40]}"})
        elif not clean_message(message, len(message)):  # as a turn cleans it: invisible characters only
            problems.append({"line": line, "error": "no text (nothing but spaces or invisible characters)"
                             if message else "no text"})
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
    """Start batch jobs on a thread each, report their progress and results a page at a time, cancel them."""

    def __init__(self, client: Callable[[], redis.Redis], *, heartbeat: float = HEARTBEAT_SECONDS,
                 lease: float = LEASE_SECONDS, cancel_wait: float = CANCEL_WAIT_SECONDS):
        self._client = client
        self.heartbeat, self.lease, self.cancel_wait = heartbeat, lease, cancel_wait

    def start(self, key_id: str, rows: list[dict], problems: list[dict],
              classify: Callable[[dict], dict]) -> str:
        job_id = uuid.uuid4().hex[:16]
        name = f"{PREFIX}:{job_id}"
        now = time.time()
        pipe = self._client().pipeline(transaction=True)
        pipe.hset(name, mapping={"status": "queued", "total": len(rows), "done": 0, "created": now,
                                 "heartbeat": now, "key": key_id, "errors": json.dumps(problems)})
        pipe.expire(name, KEEP)
        pipe.execute()
        threading.Thread(target=self._run, args=(job_id, rows, classify), name=f"batch-{job_id}", daemon=True).start()
        return job_id

    def _run(self, job_id: str, rows: list[dict], classify: Callable[[dict], dict]) -> None:
        name = f"{PREFIX}:{job_id}"
        alive = threading.Event()
        threading.Thread(target=self._beat, args=(name, alive), name=f"batch-{job_id}-heartbeat", daemon=True).start()
        try:
            pipe = self._client().pipeline(transaction=True)
            pipe.hset(name, "status", "running")
            pipe.hexists(name, "cancel")  # asked before the first row
            cancelled = bool(pipe.execute()[-1])
            for row in rows:
                if cancelled:
                    self._client().hset(name, mapping={"status": "cancelled", "finished": time.time()})
                    return
                try:
                    found = {"id": row["id"], "line": row["line"], **classify(row)}
                except ApiError as exc:  # the core refused this message (an empty one, say): the others go on
                    found = {"id": row["id"], "line": row["line"], "error": exc.message}
                except ChatbotError as exc:
                    found = {"id": row["id"], "line": row["line"], "error": str(exc)}
                pipe = self._client().pipeline(transaction=True)
                pipe.rpush(f"{name}:results", json.dumps(found, ensure_ascii=False))
                pipe.expire(f"{name}:results", KEEP)
                pipe.hincrby(name, "done", 1)
                pipe.hexists(name, "cancel")  # checked between two rows, never in the middle of one
                cancelled = bool(pipe.execute()[-1])
            self._client().hset(name, mapping={"status": "done", "finished": time.time()})
        except Exception as exc:  # noqa: BLE001 - the job reports its failure instead of dying silently
            log.exception("Batch job %s failed", job_id)
            self._client().hset(name, mapping={"status": "failed", "error": f"{exc.__class__.__name__}: {exc}",
                                               "finished": time.time()})
        finally:
            alive.set()  # the heartbeat stops with the runner, however it ended

    def _beat(self, name: str, stopped: threading.Event) -> None:
        """Say every `heartbeat` seconds that the runner is alive, until it ends (or its process does)."""
        while not stopped.wait(self.heartbeat):
            try:
                self._client().hset(name, "heartbeat", time.time())
            except redis.RedisError as exc:  # a missed beat; the next one may reach Redis again
                log.warning("Batch job %s: heartbeat not stored: %s", name, exc)

    def _raw(self, job_id: str, key_id: str, admin: bool) -> dict:
        raw = {as_text(k): as_text(v) for k, v in self._client().hgetall(f"{PREFIX}:{job_id}").items()}
        if not raw or (raw["key"] != key_id and not admin):
            raise ApiError(404, "job_not_found", f"No batch job {shown(job_id)} (jobs are kept a day).")
        return raw

    def _status(self, raw: dict) -> tuple[str, str | None]:
        """The job's status and error as a client reads them: a runner gone silent is `interrupted`."""
        status, error = raw["status"], raw.get("error") or None
        if status in RUNNING and time.time() - float(raw.get("heartbeat") or raw["created"]) > self.lease:
            done, total = int(raw["done"]), int(raw["total"])
            return "interrupted", (f"The API process running this job stopped (a restart?) after {done:,} of "
                                   f"{total:,} messages; their results are kept. Send the messages missing from "
                                   "`results` again as a new batch.")
        if status in RUNNING and raw.get("cancel"):
            return "cancelling", error
        return status, error

    def get(self, job_id: str, key_id: str, *, admin: bool = False, offset: int = 0, limit: int = PAGE) -> dict:
        """A job's progress and a page of its results (`offset`, at most `limit`); 404 for an unknown
        job or another key's job."""
        raw = self._raw(job_id, key_id, admin)
        status, error = self._status(raw)
        stored = [json.loads(r) for r in self._client().lrange(f"{PREFIX}:{job_id}:results", offset,
                                                               offset + limit - 1)]
        total, done = int(raw["total"]), int(raw["done"])
        following = offset + len(stored)
        return {"job_id": job_id, "status": status, "finished": status not in (*RUNNING, "cancelling"),
                "total": total, "done": done, "progress": round(done / total, 4) if total else 1.0,
                "problems": json.loads(raw["errors"]), "error": error,
                "offset": offset, "limit": limit, "next_offset": following if following < done else None,
                "results": stored}

    def cancel(self, job_id: str, key_id: str, *, admin: bool = False) -> dict:
        """Stop a job between two rows and answer its state (`cancelled`, with the results so far).

        Waits up to `cancel_wait` seconds for the runner to stop (a row's classification); a job
        still on its row then reads `cancelling`. A job cancelled already is answered as it is;
        one that finished otherwise raises ApiError 409."""
        self._refuse_finished(job_id, key_id, admin)
        client = self._client()
        if client.eval(CANCEL, 1, f"{PREFIX}:{job_id}", time.time()):
            deadline = time.monotonic() + self.cancel_wait
            while as_text(client.hget(f"{PREFIX}:{job_id}", "status")) in RUNNING and time.monotonic() < deadline:
                time.sleep(0.05)
        else:  # it finished between the read above and the cancel: as any finished job
            self._refuse_finished(job_id, key_id, admin)
        return self.get(job_id, key_id, admin=admin)

    def _refuse_finished(self, job_id: str, key_id: str, admin: bool) -> None:
        """ApiError 409 `job_finished` for a job that ended other than by a cancel (done, failed, interrupted)."""
        status, _ = self._status(self._raw(job_id, key_id, admin))
        if status not in (*RUNNING, "cancelling", "cancelled"):
            raise ApiError(409, "job_finished", f"Batch job {shown(job_id)} is {status} already; nothing to cancel.",
                           job_status=status)
