"""`POST /v1/classify` (one message, no reply) and `POST /v1/triage/batch` (a file of messages, with progress)."""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile

from api import errors
from api.auth import agent_key
from api.batch import MAX_PAGE, MAX_ROWS, PAGE, parse_upload
from api.desk import Desk, desk
from api.errors import ApiError
from api.metering import metered_backend
from api.once import run_once
from api.schemas import ClassifyIn
from api.timing import CoreTimer
from api.turns import conversation_id
from chatbot.access.api_keys import ApiKey, KeyLimitReached
from chatbot.access.roles import ADMIN
from chatbot.turn.classify import classify
from common.errors import shown

router = APIRouter(prefix="/v1", tags=["triage"])
MAX_UPLOAD_BYTES = 20_000_000  # 10,000 messages of up to 2,000 bytes, which most tickets are well under


def classify_one(the_desk: Desk, key: ApiKey, text: str, tier: str, conversation: str = "",
                 timer: CoreTimer | None = None) -> dict:
    """{"text", "intent": {intent, confidence, scores, abstained...}, "sentiment", "priority", "escalation"}.

    The time spent in `classify` goes on `timer`."""
    timer = timer or CoreTimer()
    try:
        backend, _ = metered_backend(the_desk, key, conversation)
    except KeyLimitReached:  # out of tokens: the router alone classifies (no model asked when it abstains)
        backend = the_desk.services.offline_backend()
    bot = the_desk.services.build_chatbot(backend)
    with timer.span():
        found = classify(bot, text, customer_tier=tier, conversation_id=conversation)
    timer.exclude(getattr(backend, "key_ms", 0.0))  # holding and counting the key's tokens (none on the fallback)
    if found is None:
        raise ApiError(422, "empty_message", "The message is empty: send some text.")
    triage = found.triage
    return {
        "text": found.text,
        "intent": found.route,
        "sentiment": {"level": triage["sentiment"], "score": triage["sentiment_score"], "trend": triage["trend"]},
        "priority": triage["priority"],
        "escalation": {"escalate": triage["escalate"], "reasons": triage["reasons"],
                       "newly_escalated": triage["newly_escalated"],
                       "conversation_reason": triage["escalation_reason"] or None},
        "state": triage["state"],
    }


@router.post("/classify", summary="Intent with scores, sentiment, priority and escalation of one message; no reply")
def classify_message(body: ClassifyIn, response: Response, key: ApiKey = Depends(agent_key),
                     the_desk: Desk = Depends(desk)) -> dict:
    conversation = conversation_id(the_desk, body.conversation_id, key) if body.conversation_id else ""
    timer = CoreTimer()
    found = classify_one(the_desk, key, body.text, body.customer_tier, conversation, timer)
    response.headers.update(timer.header())
    return found


async def one_file(request: Request) -> None:
    """422 when the form holds more than one `file` part: FastAPI gives the route the last one only, and
    the others would be dropped without a word. The form is the one FastAPI parsed (Starlette keeps it)."""
    files = (await request.form()).getlist("file")
    if len(files) > 1:
        raise errors.invalid_request([f"file: {len(files)} files were sent; send one file a batch (several "
                                      "files: one batch each, or join their rows into one file)"])


@router.post("/triage/batch", status_code=202, max_body_size=MAX_UPLOAD_BYTES + 1_000_000,  # + multipart framing
             dependencies=[Depends(one_file)],
             summary="Triage a CSV (a `text` column) or JSON Lines file of messages; poll the job for progress")
def triage_batch(request: Request, file: UploadFile = File(..., description="CSV or JSONL, UTF-8"),
                 key: ApiKey = Depends(agent_key), the_desk: Desk = Depends(desk)):
    data = file.file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise ApiError(413, "upload_too_large", f"{shown(file.filename)}: over {MAX_UPLOAD_BYTES // 1_000_000} MB; "
                                                "split it into several batches.")
    digest = hashlib.sha256(data).hexdigest()

    def produce() -> dict:
        rows, problems = parse_upload(file.filename or "upload", file.content_type or "", data)
        job = the_desk.jobs.start(key.key_id, rows, problems,
                                  lambda row: classify_one(the_desk, key, row["text"], row["customer_tier"]))
        return {"job_id": job, "status": "queued", "total": len(rows), "problems": problems,
                "status_url": f"/v1/triage/batch/{job}"}

    return run_once(the_desk, request, key, f"{file.filename}:{digest}", produce, status=202)


@router.get("/triage/batch/{job_id}", summary="A batch job's progress, and a page of its results so far")
def batch_job(job_id: str, offset: int = Query(0, ge=0, le=MAX_ROWS,
                                               description="The first result to return (0: the first)"),
              limit: int = Query(PAGE, ge=1, le=MAX_PAGE, description="Results to return at most"),
              key: ApiKey = Depends(agent_key), the_desk: Desk = Depends(desk)) -> dict:
    return the_desk.jobs.get(job_id, key.key_id, admin=key.role == ADMIN, offset=offset, limit=limit)


@router.delete("/triage/batch/{job_id}", summary="Cancel a batch job: it stops between two rows, keeping its results")
def cancel_batch_job(job_id: str, key: ApiKey = Depends(agent_key), the_desk: Desk = Depends(desk)) -> dict:
    return the_desk.jobs.cancel(job_id, key.key_id, admin=key.role == ADMIN)
