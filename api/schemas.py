"""Request bodies of the API (pydantic); FastAPI validates them and lists them in the OpenAPI docs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from chatbot.triage.triage import TIER_WEIGHT

Tier = Literal[tuple(TIER_WEIGHT)]  # type: ignore[valid-type]


class ChatIn(BaseModel):
    """One customer message; without `conversation_id` a new conversation starts."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(..., description="The customer's message (secrets in it are redacted before storing).")
    conversation_id: str | None = Field(None, description="A conversation this desk made; omit to start one.")
    customer_tier: Tier = Field("standard", description="The customer's account tier (raises the priority).")


class ClassifyIn(BaseModel):
    """A message to classify as a turn would, with no reply and nothing stored."""

    model_config = ConfigDict(extra="forbid")
    text: str
    conversation_id: str | None = Field(None, description="Classify as the next message of this conversation.")
    customer_tier: Tier = "standard"


class HandoffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("handoff requested", max_length=300, description="Why a person should take over.")


class PromptTestIn(BaseModel):
    """A test reply from one version of a prompt template (a draft, say), for a first message; nothing stored."""

    model_config = ConfigDict(extra="forbid")
    name: str
    version: int | None = Field(None, ge=1, description="Defaults to the latest version (the draft).")
    text: str
    customer_tier: Tier = "standard"
