"""The stored message as one typed record (`Message`, `TurnMeta`, `Status`), read and written at the store.

The stored form is one JSON object per message in `chatbot:conv:ID:messages`, the same since the
first release, so every stored conversation still loads:

    {"ts": 1733450000.0, "role": "user" | "assistant", "content": "...",
     "meta": {...TurnMeta...},        # on the reply; on the customer's message when no reply was stored
     "turn": "hex id",                # customer messages sent since turns became durable
     "status": "pending"}             # until the turn's reply is stored, then absent

Feedback and the training approval are kept apart (the conversation's feedback hash) and attached
as the messages are read. Everything above the store reads messages through these types only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, Iterable

from chatbot.store.outcomes import EMPTY

USER, ASSISTANT = "user", "assistant"
AGENT = "agent"  # a person on the support team wrote it (the handoff queue, a help desk)
# The backend name of the notice written when a person takes over the conversation.
HANDOFF = "handoff"
# A turn still pending after this long was cut off (its process stopped): it reads as interrupted.
PENDING_SECONDS = 600.0
# What a reply that stopped early says: the page was rerun (a widget touched mid-stream), the tab
# closed, the script was stopped, or the stream was dropped before it ended.
INTERRUPTED_TEXT = "The reply was interrupted before it finished."
# What a turn whose process stopped says, once it has been pending for PENDING_SECONDS.
STALE_TEXT = "The reply was interrupted: the app stopped before it finished."


class Status(StrEnum):
    """Where a message's turn stands."""

    PENDING = "pending"  # a customer message sent; its reply is not stored yet
    ANSWERED = "answered"  # a reply was stored (or this is that reply)
    INTERRUPTED = "interrupted"  # the reply stopped before its end, or the turn's process stopped
    FAILED = "failed"  # no reply: the backend failed or answered with nothing
    WAITING_FOR_HUMAN = "waiting_for_human"  # handed to a person: the assistant drafts no reply


_STR = {"session_id", "backend", "model", "prompt_name", "prompt_hash", "error", "stop_reason", "outcome", "agent"}
_INT = {"prompt_version", "input_tokens", "output_tokens", "summarised_messages"}
_FLOAT = {"latency_ms", "ttft_ms", "created_at"}
_BOOL = {"summary_updated", "interrupted"}


def _number(value: Any, kind: type) -> Any:
    try:
        return kind(float(value or 0))
    except (TypeError, ValueError):
        return kind(0)


@dataclass
class TurnMeta:
    """What one turn did, stored with the reply (or with the customer's message when it got none)."""

    session_id: str = ""
    backend: str = ""
    model: str = ""
    prompt_name: str = ""
    prompt_version: int = 0
    prompt_hash: str = ""
    retrieved: list[dict] = field(default_factory=list)
    citations: list[int] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    ttft_ms: float = 0.0
    stages_ms: dict[str, float] = field(default_factory=dict)
    summarised_messages: int = 0
    # Kinds of secret replaced by a marker in the customer's message ("card", "password", ...).
    redacted: list[str] = field(default_factory=list)
    summary_updated: bool = False
    # The router's choice (RouteChoice.to_dict) and triage's verdict (TriageVerdict.to_dict).
    route: dict[str, Any] = field(default_factory=dict)
    triage: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    # Why the backend stopped (a common.types.Stop value, "" when it does not say), and what the
    # reply was made of it (chatbot.store.outcomes: answer, cut_off, refusal, empty; "" for no model reply).
    stop_reason: str = ""
    outcome: str = ""
    # The reply stopped before its end (rerun, closed tab, a backend failure half-way): `error` says why.
    interrupted: bool = False
    agent: str = ""
    created_at: float = field(default_factory=time.time)
    # Fields this release does not know (written by a newer one): kept, so a round trip loses nothing.
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, raw: dict | None) -> "TurnMeta":
        """Stored metadata of any release: missing fields take their defaults (`created_at` 0), numbers
        stored as text or null are read as numbers, unknown fields are kept in `extra`."""
        raw = dict(raw or {})
        known = {f.name for f in fields(cls)} - {"extra"}
        values: dict[str, Any] = {"created_at": 0.0}
        for name in known & raw.keys():
            value = raw[name]
            if name in _STR:
                values[name] = "" if value is None else str(value)
            elif name in _INT:
                values[name] = _number(value, int)
            elif name in _FLOAT:
                values[name] = _number(value, float)
            elif name in _BOOL:
                values[name] = bool(value)
            elif name in ("route", "triage", "stages_ms"):
                values[name] = dict(value) if isinstance(value, dict) else {}
            else:
                values[name] = list(value) if isinstance(value, (list, tuple)) else []
        return cls(**values, extra={k: v for k, v in raw.items() if k not in known})

    def to_dict(self) -> dict:
        """The stored form: every field, and the unknown ones read in."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**self.extra, **_plain(data)}

    @property
    def handed_off(self) -> bool:
        """The conversation is with a human: the bot drafted no reply."""
        return bool(self.triage.get("escalate"))

    @property
    def is_handoff_notice(self) -> bool:
        """The turn was answered by the handoff notice, not by a model."""
        return self.backend == HANDOFF

    @property
    def no_reply(self) -> bool:
        """The turn got no reply: the backend failed, or answered with nothing."""
        return bool(self.error) or self.outcome == EMPTY

    @property
    def sources(self) -> list[dict]:
        """The passages the reply cited, each with its marker number."""
        return [{"n": n, **self.retrieved[n - 1]} for n in self.citations if 1 <= n <= len(self.retrieved)]

    @property
    def intent(self) -> str:
        """The routed intent; "" when the turn was not routed."""
        return str(self.route.get("intent") or "")

    @property
    def sentiment(self) -> str:
        return str(self.triage.get("sentiment") or "")

    @property
    def priority(self) -> int | None:
        """Triage's priority (1-10); None when the turn was not triaged."""
        value = self.triage.get("priority")
        return None if value in (None, "") else _number(value, int)

    @property
    def escalation_reasons(self) -> list[str]:
        return [str(r) for r in self.triage.get("reasons") or []]


def _plain(data: dict) -> dict:
    """Copies of the containers, so the stored dict never shares lists with a live TurnMeta."""
    return {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v) for k, v in data.items()}


@dataclass
class Feedback:
    """An agent's verdict on one reply: thumbs (1 up, 0 down, None none), a comment, when (epoch seconds)."""

    score: int | None = None
    comment: str = ""
    at: float = 0.0


@dataclass
class Message:
    """One stored message: who wrote it, its text, its turn's metadata and where the turn stands."""

    role: str
    content: str
    ts: float = 0.0
    meta: TurnMeta | None = None
    turn: str = ""
    status: Status = Status.ANSWERED
    feedback: Feedback | None = None
    approved: bool = False
    approved_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_stored(cls, raw: dict) -> "Message":
        """A message as the store holds it (any release's form; see the module docstring)."""
        meta = TurnMeta.from_dict(raw["meta"]) if raw.get("meta") else None
        role = str(raw.get("role") or USER)
        feedback = raw.get("feedback")  # in an export; the store attaches it from the feedback hash
        message = cls(role=role, content=str(raw.get("content") or ""), ts=_number(raw.get("ts"), float),
                      meta=meta, turn=str(raw.get("turn") or ""), approved=bool(raw.get("approved")),
                      approved_at=_number(raw.get("approved_at"), float),
                      extra={k: v for k, v in raw.items() if k not in _STORED})
        if isinstance(feedback, dict):
            score = feedback.get("score")
            message.feedback = Feedback(score=None if score in (None, "") else _number(score, int),
                                        comment=str(feedback.get("comment") or ""),
                                        at=_number(feedback.get("at"), float))
        message.status = _status(role, str(raw.get("status") or ""), meta)
        return message

    def to_stored(self) -> dict:
        """The JSON object the store keeps (with feedback and approval when they were read with it)."""
        stored: dict[str, Any] = {**self.extra, "ts": self.ts, "role": self.role, "content": self.content}
        if self.meta is not None:
            stored["meta"] = self.meta.to_dict()
        if self.turn:
            stored["turn"] = self.turn
        if self.status is Status.PENDING:
            stored["status"] = Status.PENDING.value
        if self.feedback is not None:
            stored["feedback"] = {"score": self.feedback.score, "comment": self.feedback.comment,
                                  "at": self.feedback.at}
        if self.approved:
            stored.update(approved=True, approved_at=self.approved_at)
        return stored

    def as_chat(self) -> dict[str, str]:
        """The message as a backend request takes it."""
        return {"role": self.role, "content": self.content}

    @property
    def is_user(self) -> bool:
        return self.role == USER

    @property
    def is_handoff_notice(self) -> bool:
        return self.role == ASSISTANT and self.meta is not None and self.meta.is_handoff_notice

    @property
    def failed(self) -> bool:
        """A customer message whose turn got no reply (a failed turn): the backend failed or answered nothing."""
        return self.is_user and self.status is not Status.PENDING and self.meta is not None and self.meta.no_reply


_STORED = {"ts", "role", "content", "meta", "turn", "status", "feedback", "approved", "approved_at"}


def _status(role: str, stored: str, meta: TurnMeta | None) -> Status:
    """The message's own status, from its stored `status` and its metadata."""
    if stored == Status.PENDING:
        return Status.PENDING
    if stored == Status.INTERRUPTED or (meta is not None and meta.interrupted):
        return Status.INTERRUPTED
    if meta is None or role == AGENT:
        return Status.ANSWERED  # a customer message whose reply carries the turn's metadata; a person's reply
    if role == ASSISTANT:
        return Status.WAITING_FOR_HUMAN if meta.is_handoff_notice else Status.ANSWERED
    # A customer message carries the metadata only when no reply was stored.
    return Status.FAILED if meta.no_reply else Status.WAITING_FOR_HUMAN


def read_messages(raws: Iterable[dict], feedback: dict | None = None) -> list[Message]:
    """Stored message objects, in order, with the replies' feedback (the raw feedback hash) attached."""
    messages = [Message.from_stored(raw) for raw in raws]
    return merge_feedback(messages, feedback or {})


def _decode(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def merge_feedback(messages: list[Message], raw: dict) -> list[Message]:
    """Attach each reply's stored feedback (hash fields `N:score`, `N:comment`, `N:at`, `N:approved`)."""
    by_index: dict[int, dict[str, str]] = {}
    for name, value in raw.items():
        index, _, part = _decode(name).partition(":")
        by_index.setdefault(int(index), {})[part] = _decode(value)
    for index, parts in by_index.items():
        if index >= len(messages):
            continue
        message = messages[index]
        if "score" in parts or "comment" in parts:
            message.feedback = Feedback(score=int(parts["score"]) if parts.get("score") else None,
                                        comment=parts.get("comment", ""), at=_number(parts.get("at"), float))
        if parts.get("approved"):
            message.approved, message.approved_at = True, _number(parts["approved"], float)
    return messages


def settle(messages: list[Message], now: float, after: float = PENDING_SECONDS) -> list[Message]:
    """Messages whose turn never finished (its process stopped) read as interrupted after `after` seconds."""
    for message in messages:
        if message.status is Status.PENDING and now - (message.ts or now) >= after:
            message.status = Status.INTERRUPTED
            message.meta = replace(message.meta or TurnMeta(created_at=0.0), error=STALE_TEXT, interrupted=True)
    return messages


def turn_meta(messages: list[Message], index: int) -> TurnMeta | None:
    """The metadata of the turn the customer message at `index` starts: on its reply, or on itself."""
    message = messages[index]
    if not message.is_user:
        return None
    following = messages[index + 1] if index + 1 < len(messages) else None
    return message.meta or (following.meta if following is not None and not following.is_user else None)


def count_turns(messages: Iterable[Message]) -> tuple[int, int]:
    """Turns and failed turns among stored messages: the one definition every page counts by.

    A turn is a customer message and what answered it: a model's reply, the handoff notice, or
    nothing once a person has the conversation (the message is kept for them). A customer message
    that got no reply because the backend failed or answered with nothing is a failed turn,
    counted apart; one still waiting for its reply is not counted yet.
    """
    turns = failed = 0
    for message in messages:
        if message.is_user and message.status is not Status.PENDING:  # counted when its turn ends
            if message.failed:
                failed += 1
            else:
                turns += 1
    return turns, failed


def training_messages(messages: Iterable[Message]) -> list[dict]:
    """A conversation's messages as a training set takes them: `role`, `content`, `approved`.

    A customer message that got no reply was sent again by the agent (a model never saw it
    answered); a reply cut off half-way teaches nothing: it goes, with the message it answered.
    """
    kept: list[dict] = []
    for m in messages:
        if m.is_user and (m.status is Status.PENDING or m.status is Status.INTERRUPTED or m.failed):
            continue
        if not m.is_user and m.status is Status.INTERRUPTED:
            if kept and kept[-1]["role"] == USER:
                kept.pop()
            continue
        kept.append({"role": m.role, "content": m.content, "approved": m.approved})
    return kept


def unanswered(messages: list[Message]) -> Message | None:
    """The customer message of the conversation's last turn when that turn got no whole reply, else None."""
    if not messages:
        return None
    last = messages[-1]
    if last.failed:  # the backend failed, or answered with nothing
        return last
    if not last.is_user and last.status is Status.INTERRUPTED and len(messages) > 1 and messages[-2].is_user:
        return messages[-2]
    return None
