"""Prompt templates (admin keys): the list with versions, and a test reply from any version."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.auth import admin_key
from api.desk import Desk, desk
from api.metering import metered_backend
from api.errors import ApiError
from api.turns import usage
from chatbot.access.api_keys import ApiKey
from api.schemas import PromptTestIn
from chatbot.turn.steps import clean_message
from common.errors import PromptNotFound, shown

router = APIRouter(prefix="/v1/prompts", tags=["prompts"])


@router.get("", summary="Templates with their production, draft and latest versions")
def list_prompts(key: ApiKey = Depends(admin_key), the_desk: Desk = Depends(desk)) -> dict:
    return {"prompts": the_desk.services.prompts.overview()}


@router.post("/test", summary="A test reply from one version of a template; nothing is stored")
def test_prompt(body: PromptTestIn, key: ApiKey = Depends(admin_key), the_desk: Desk = Depends(desk)) -> dict:
    library = the_desk.services.prompts
    if body.name not in library.names():
        raise PromptNotFound(f"No prompt template {shown(body.name)!r}; GET /v1/prompts lists them.")
    version = body.version or library.labels(body.name)["latest"]
    template = library.template(body.name, version)
    backend, fallback = metered_backend(the_desk, key)
    bot = the_desk.services.build_chatbot(backend)
    if not clean_message(body.text, bot.max_message_chars):  # as a turn, an empty message gets no reply
        raise ApiError(422, "empty_message", "The message is empty: send some text.")
    preview = bot.preview(
        body.text, template=template, version=version, customer_tier=body.customer_tier)
    text = preview.reply.consume()
    meta = preview.reply.meta
    return {
        "reply": text, "outcome": meta.outcome, "stop_reason": meta.stop_reason,
        "prompt": {"name": preview.prompt.name, "version": version, "hash": preview.prompt.hash,
                   "system": preview.prompt.system},
        "intent": meta.route, "triage": meta.triage, "citations": meta.sources, "usage": usage(meta),
        "backend": meta.backend, "model": meta.model, "fallback": fallback or None,
    }
