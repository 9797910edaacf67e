"""Request bodies of the API (pydantic); FastAPI validates them and lists them in the OpenAPI docs.

Every body is a `Body`: its strings must be text UTF-8 can carry. JSON may spell a lone UTF-16
surrogate (`"\\ud800"`) and Python's `json` reads it into a `str`, but no UTF-8 text holds it: the
message could be neither stored (Redis) nor sent on (a model's API), and its idempotency fingerprint
(`model_dump_json`) failed with a 500. It is refused here, with the field that holds it, once for
every body, so that no route can forget it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from chatbot.triage.triage import TIER_WEIGHT

Tier = Literal[tuple(TIER_WEIGHT)]  # type: ignore[valid-type]
# No template is saved a million times (one save a minute for two years); a number past it is no version.
MAX_PROMPT_VERSION = 1_000_000
UNPAIRED = "an unpaired surrogate {escape} is not a character"


def unpaired_surrogate(text: str) -> str | None:
    """The first lone surrogate in `text` as its JSON escape (`\\ud800`), or None when UTF-8 can carry it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"\\u{ord(text[exc.start]):04x}"
    return None


def first_unpaired(value: Any, where: str = "") -> tuple[str, str] | None:
    """(where, escape) of the first lone surrogate in `value`, a string or the keys and values of dicts and
    lists at any depth: `where` is its path ("customer.name", "tags.2"; "" for `value` itself), `escape`
    as `unpaired_surrogate` gives it. None when UTF-8 can carry all of it."""
    if isinstance(value, str):
        escape = unpaired_surrogate(value)
        return (where, escape) if escape is not None else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for name, item in items:
        inner = f"{where}.{name}" if where else str(name)
        found = (first_unpaired(name, inner) if isinstance(name, str) else None) or first_unpaired(item, inner)
        if found is not None:
            return found
    return None


def whole_characters(value: Any) -> Any:
    """`value` as it is when every string in it (dict keys too, at any depth) is UTF-8 text."""
    if (found := first_unpaired(value)) is not None:
        raise PydanticCustomError("unpaired_surrogate", UNPAIRED, {"escape": found[1]})
    return value  # a nested Body checked its own fields


class Body(BaseModel):
    """A request body: unknown fields refused (a subclass may allow them), every string whole UTF-8 text."""

    model_config = ConfigDict(extra="forbid")
    # Fields a body with extra="allow" keeps (OpenAI's request has many) are checked as its own fields are.
    __pydantic_extra__: dict[str, Annotated[Any, AfterValidator(whole_characters)]] = Field(init=False)

    @field_validator("*", mode="after")
    @classmethod
    def _whole_characters(cls, value: Any) -> Any:
        return whole_characters(value)


class ChatIn(Body):
    """One customer message; without `conversation_id` a new conversation starts."""

    text: str = Field(..., description="The customer's message (secrets in it are redacted before storing).")
    conversation_id: str | None = Field(None, description="A conversation this desk made; omit to start one.")
    customer_tier: Tier = Field("standard", description="The customer's account tier (raises the priority).")


class ClassifyIn(Body):
    """A message to classify as a turn would, with no reply and nothing stored."""

    text: str
    conversation_id: str | None = Field(None, description="Classify as the next message of this conversation.")
    customer_tier: Tier = "standard"


class HandoffIn(Body):
    reason: str = Field("handoff requested", max_length=300, description="Why a person should take over.")


class PromptTestIn(Body):
    """A test reply from one version of a prompt template (a draft, say), for a first message; nothing stored."""

    name: str
    version: int | None = Field(None, ge=1, le=MAX_PROMPT_VERSION,
                                description="Defaults to the latest version (the draft).")
    text: str
    customer_tier: Tier = "standard"
