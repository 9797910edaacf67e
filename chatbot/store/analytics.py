"""Pure functions over stored conversations: the summary kept per conversation, stats, exports."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from statistics import mean
from typing import Any, Iterable

from chatbot.store.messages import (HANDOFF, Feedback, Message, Status, TurnMeta, count_turns,  # noqa: F401
                                    merge_feedback)  # merge_feedback: still read from here by callers
from chatbot.store.outcomes import outcome_notice
from common.redaction import redact
from common.timezones import SECOND_FORMAT, UTC, DisplayZone

PERCENTILES = (50, 90, 95, 99)
TITLE_CHARS = 120
SPEAKERS = {"user": "Customer", "assistant": "Assistant", "agent": "Agent"}  # "agent": a person, from the handoff queue


def _decode(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


@dataclass
class ConversationSummary:
    """What a list of conversations shows, kept up to date by every write (no message is read)."""

    id: str
    created: float = 0.0
    updated: float = 0.0
    title: str = ""
    agent: str = ""
    agents: list[str] = field(default_factory=list)
    messages: int = 0
    turns: int = 0
    failed: int = 0
    intents: dict[str, int] = field(default_factory=dict)
    last_intent: str = ""
    escalated: bool = False
    escalation_reasons: list[str] = field(default_factory=list)
    # The triage of the message that escalated the conversation; later messages never change these.
    escalated_at: float = 0.0
    escalation_sentiment: str = ""
    escalation_priority: int = 0
    sentiment: str = ""
    priority: int = 0
    state: str = ""
    backend: str = ""
    model: str = ""

    @classmethod
    def from_hash(cls, session_id: str, raw: dict) -> "ConversationSummary":
        h = {_decode(k): _decode(v) for k, v in raw.items()}
        return cls(
            id=session_id, created=float(h.get("created", 0)), updated=float(h.get("updated", 0)),
            title=h.get("title", ""), agent=h.get("agent", ""),
            agents=sorted(k[6:] for k in h if k.startswith("agent:")),
            messages=int(h.get("messages", 0)), turns=int(h.get("turns", 0)), failed=int(h.get("failed", 0)),
            intents={k[7:]: int(v) for k, v in h.items() if k.startswith("intent:")},
            last_intent=h.get("last_intent", ""), escalated=h.get("escalated") == "1",
            escalation_reasons=json.loads(h.get("escalation_reasons") or "[]"),
            escalated_at=float(h.get("escalated_at") or 0), escalation_sentiment=h.get("escalation_sentiment", ""),
            escalation_priority=int(float(h.get("escalation_priority") or 0)),
            sentiment=h.get("sentiment", ""), priority=int(float(h.get("priority") or 0)),
            state=h.get("triage_state", ""), backend=h.get("backend", ""), model=h.get("model", ""),
        )

    def to_dict(self) -> dict:
        return asdict(self)


def summary_fields(stored: list[dict]) -> tuple[dict[str, str], dict[str, int], str]:
    """What a turn changes in the conversation's summary hash: fields to set, counters, title.

    `stored` are the messages being written, in their stored form (Message.to_stored).
    """
    messages = [Message.from_stored(m) for m in stored]
    sets: dict[str, str] = {}
    incr: dict[str, int] = {"messages": len(messages)}
    title = next((m.content[:TITLE_CHARS] for m in messages if m.is_user), "")
    turns, failed = count_turns(messages)
    for counter, value in (("turns", turns), ("failed", failed)):
        if value:
            incr[counter] = value
    for meta in (m.meta for m in messages if m.meta is not None):
        if not meta.is_handoff_notice:
            sets.update({name: value for name, value in (("backend", meta.backend), ("model", meta.model)) if value})
        if meta.intent:
            sets["last_intent"] = meta.intent
            incr[f"intent:{meta.intent}"] = incr.get(f"intent:{meta.intent}", 0) + 1
        if meta.sentiment:
            sets["sentiment"] = meta.sentiment
        if meta.priority is not None:
            sets["priority"] = str(meta.priority)
        if meta.triage.get("state"):
            sets["triage_state"] = str(meta.triage["state"])
        if meta.handed_off:
            sets["escalated"] = "1"
        # The escalating message's triage, kept whatever comes after (metadata without the flag: every escalated turn).
        if meta.triage.get("newly_escalated") or (meta.handed_off and "newly_escalated" not in meta.triage):
            sets["escalation_reasons"] = json.dumps(meta.escalation_reasons, ensure_ascii=False)
            sets["escalation_sentiment"] = meta.sentiment
            sets["escalation_priority"] = str(meta.priority or 0)
            sets["escalated_at"] = repr(float(meta.created_at or 0))
    return sets, incr, title


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))  # the smallest value with at least q% of values at or below it
    return ordered[min(len(ordered), max(1, rank)) - 1]


def turn_records(conversations: Iterable[dict], since: float | None = None, zone: DisplayZone = UTC) -> list[dict]:
    """One flat record per turn from `since` on, from the message that carries the turn's metadata.

    `ts` is Unix seconds; `day` is its date in `zone` (the reader's), so a turn at 23:30 in Berlin
    counts on the Berlin day, not on the server's.

    `kind` is "reply" (a model answered), "handoff" (the conversation is with a person: the
    handoff notice, or a customer message the assistant no longer answers) or "failed" (the
    backend failed; the customer message has no reply). Only replies have latency and tokens.
    """
    records = []
    for conversation in conversations:
        for message in conversation.get("messages", []):
            meta = message.meta
            if meta is None:
                continue  # a customer message whose reply carries the turn's metadata
            if not message.is_user:
                kind = HANDOFF if meta.is_handoff_notice else "reply"
            else:
                kind = "failed" if message.failed else HANDOFF
            ts = message.ts or meta.created_at
            if since is not None and ts < since:
                continue
            records.append(_turn_record(conversation.get("id", ""), message, meta, kind, ts, zone))
    return records


def _turn_record(conversation: str, message: Message, meta: TurnMeta, kind: str, ts: float,
                 zone: DisplayZone) -> dict:
    replied = kind == "reply"  # only replies have latency and tokens
    feedback = message.feedback
    return {
        "conversation": conversation, "ts": ts, "day": zone.day(ts),
        "kind": kind, "failed": kind == "failed",
        "intent": meta.intent or "(not routed)",
        "sentiment": meta.sentiment,
        "sentiment_score": meta.triage.get("sentiment_score"),
        "priority": meta.priority,
        "escalate": meta.handed_off,
        "reasons": meta.escalation_reasons,
        "backend": meta.backend or "(unknown)", "model": meta.model,
        "input_tokens": meta.input_tokens if replied else 0,
        "output_tokens": meta.output_tokens if replied else 0,
        "latency_ms": meta.latency_ms if replied else None,
        "ttft_ms": (meta.ttft_ms or None) if replied else None,
        "feedback": feedback.score if feedback else None, "comment": feedback.comment if feedback else "",
        "approved": message.approved,
    }


def _days(first: str, last: str) -> list[str]:
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def volume(conversations: list[dict], records: list[dict], zone: DisplayZone = UTC) -> list[dict]:
    """Per day in `zone`, with no gaps: conversations started and turns taken."""
    started = Counter(zone.day(c["created"]) for c in conversations if c.get("created"))
    turns = Counter(r["day"] for r in records)
    days = sorted(set(turns) | set(started))
    if not days:
        return []
    return [{"day": d, "conversations": started.get(d, 0), "turns": turns.get(d, 0)} for d in _days(days[0], days[-1])]


def latency_percentiles(records: list[dict]) -> list[dict]:
    """p50/p90/p95/p99 of the whole reply time and of the time to first token, in ms."""
    rows = []
    for name, label in (("latency_ms", "reply"), ("ttft_ms", "first token")):
        values = [float(r[name]) for r in records if r.get(name) is not None]
        rows.append({"measure": label, "n": len(values),
                     **{f"p{q}": percentile(values, q) for q in PERCENTILES}})
    return rows


def feedback_summary(records: list[dict]) -> dict:
    """Thumbs up and down, their share, comments and approvals."""
    up = sum(1 for r in records if r["feedback"] == 1)
    down = sum(1 for r in records if r["feedback"] == 0)
    return {"up": up, "down": down, "rated": up + down, "score": up / (up + down) if up + down else None,
            "comments": sum(1 for r in records if r["comment"]),
            "approved": sum(1 for r in records if r["approved"])}


def sentiment_over_time(records: list[dict], zone: DisplayZone = UTC) -> dict:
    """The mean sentiment score per day, or per hour when the scored turns span less than a day (in `zone`).

    `unit` is "day" or "hour"; `rows` hold `when` (the bucket: "2025-03-03", or "2025-03-03 14:00"),
    `mean_score` and `turns`. Hours make one day's turns a line rather than a single point.
    """
    scored = [(r["ts"], float(r["sentiment_score"])) for r in records
              if isinstance(r["sentiment_score"], (int, float))]
    stamps = [ts for ts, _ in scored]
    unit = "hour" if stamps and max(stamps) - min(stamps) < 86400 else "day"
    buckets: dict[str, list[float]] = defaultdict(list)
    for ts, score in scored:
        buckets[zone.format(ts, "%Y-%m-%d %H:00") if unit == "hour" else zone.day(ts)].append(score)
    return {"unit": unit, "rows": [{"when": k, "mean_score": mean(v), "turns": len(v)}
                                   for k, v in sorted(buckets.items())]}


def overview(conversations: list[dict], since: float | None = None, zone: DisplayZone = UTC) -> dict:
    """Everything the stats page charts, for the conversations given (turns from `since` on), days in `zone`."""
    records = turn_records(conversations, since, zone)
    active = {r["conversation"] for r in records}
    counted = [c for c in conversations if c.get("id") in active]
    escalated = {r["conversation"] for r in records if r["escalate"]}
    reasons = Counter(reason for r in records if r["escalate"] for reason in r["reasons"])
    tokens: dict[str, dict[str, Any]] = {}
    for r in (r for r in records if r["kind"] == "reply"):
        row = tokens.setdefault(r["backend"], {"backend": r["backend"], "turns": 0, "input_tokens": 0,
                                               "output_tokens": 0})
        row["turns"] += 1
        row["input_tokens"] += r["input_tokens"]
        row["output_tokens"] += r["output_tokens"]
    return {
        "conversations": len(counted),
        "turns": sum(1 for r in records if not r["failed"]),
        "failed_turns": sum(1 for r in records if r["failed"]),
        "volume": volume(counted, records, zone),
        "intents": [{"intent": k, "turns": v} for k, v in Counter(r["intent"] for r in records).most_common()],
        "escalation": {"escalated": len(escalated), "rate": len(escalated) / len(counted) if counted else None,
                       "reasons": [{"reason": k, "count": v} for k, v in reasons.most_common()]},
        "sentiment": sentiment_over_time(records, zone),
        "sentiment_levels": [{"sentiment": k, "turns": v}
                             for k, v in Counter(r["sentiment"] for r in records if r["sentiment"]).most_common()],
        "feedback": feedback_summary(records),
        "latency": latency_percentiles(records),
        "tokens": sorted(tokens.values(), key=lambda row: -(row["input_tokens"] + row["output_tokens"])),
    }


# -- exports ---------------------------------------------------------------------------------------


def without_secrets(conversation: dict) -> dict:
    """A copy whose message texts have card numbers, passwords, tokens... replaced by markers.

    New messages are redacted before they are stored; this also covers conversations stored
    before that, whenever one leaves the app.
    """
    messages = [replace(m, content=redact(m.content)) for m in conversation.get("messages", [])]
    return {**conversation, "messages": messages}


def to_json(conversation: dict) -> str:
    """The whole conversation as stored: summary fields, state, messages with their metadata (stored form)."""
    exported = without_secrets(conversation)
    exported["messages"] = [m.to_stored() for m in exported["messages"]]
    return json.dumps(exported, ensure_ascii=False, indent=2)


def _when(ts: float | None, zone: DisplayZone) -> str:
    return zone.labelled(ts, SECOND_FORMAT, empty="?")


def _reply_facts(meta: TurnMeta) -> list[str]:
    facts = []
    if meta.intent:
        confidence = meta.route.get("confidence")
        facts.append(f"intent {meta.intent}" + (f" ({confidence:.2f})" if isinstance(confidence, float) else ""))
    if meta.sentiment:
        facts.append(f"sentiment {meta.sentiment}")
    if meta.priority is not None:
        facts.append(f"priority {meta.priority}")
    if meta.handed_off:
        facts.append("escalated" + (f": {', '.join(meta.escalation_reasons)}" if meta.escalation_reasons else ""))
    if meta.backend:
        facts.append(f"{meta.backend} · {meta.model}".rstrip(" ·"))
    if meta.latency_ms:
        facts.append(f"{meta.latency_ms:,.0f} ms")
    if meta.prompt_name:
        facts.append(f"prompt {meta.prompt_name} v{meta.prompt_version}")
    return facts


def to_markdown(conversation: dict, zone: DisplayZone = UTC) -> str:
    """A readable transcript: who said what and when (in `zone`, labelled), sources, triage, feedback."""
    conversation = without_secrets(conversation)
    lines = [f"# Conversation {conversation['id']}", ""]
    lines.append(f"- Started: {_when(conversation.get('created'), zone)}")
    lines.append(f"- Last activity: {_when(conversation.get('updated'), zone)}")
    if conversation.get("agents"):
        lines.append(f"- Agents: {', '.join(conversation['agents'])}")
    lines.append(f"- Turns: {conversation.get('turns', 0)}")
    if conversation.get("escalated"):
        lines.append(f"- Escalated: {', '.join(conversation.get('escalation_reasons') or []) or 'yes'}")
    summary = ((conversation.get("state") or {}).get("memory") or {}).get("summary")
    if summary:
        lines += ["", "## Summary of older messages", "", summary]
    lines += ["", "## Messages"]
    for message in conversation.get("messages", []):
        speaker = SPEAKERS.get(message.role, message.role)
        lines += ["", f"### {speaker} · {_when(message.ts, zone)}", "", message.content]
        lines += _customer_notes(message) if message.is_user else _reply_notes(message)
    return "\n".join(lines) + "\n"


def _customer_notes(message: Message) -> list[str]:
    """Under a customer message: why it got no reply (it carries the turn's metadata only then)."""
    meta, lines = message.meta, []
    if message.status is Status.PENDING:
        return ["", "> Waiting for the reply."]
    if meta is None:
        return []
    if meta.error:
        lines += ["", f"> No reply: {meta.error}"]
    elif outcome_notice(meta):
        lines += ["", f"> {outcome_notice(meta)}"]
    else:
        lines += ["", "> With a person: the assistant drafted no reply."]
    if _reply_facts(meta):
        lines += ["", f"*{' · '.join(_reply_facts(meta))}*"]
    return lines


def _reply_notes(message: Message) -> list[str]:
    """Under a reply: interrupted, its sources, its outcome, what produced it, the agent's feedback."""
    meta, lines = message.meta or TurnMeta(created_at=0.0), []
    if message.status is Status.INTERRUPTED:
        lines += ["", f"> Interrupted: {meta.error or 'the reply stopped before its end.'}"]
    if meta.sources:
        lines += ["", "Sources:"]
        lines += [f"- [{s['n']}] {s.get('title', '')} ({s.get('source', '')})" for s in meta.sources]
    if outcome_notice(meta):  # cut off or refused
        lines += ["", f"> {outcome_notice(meta)}"]
    facts = _reply_facts(meta)
    if facts:
        lines += ["", f"*{' · '.join(facts)}*"]
    feedback = message.feedback or Feedback()
    verdict = {1: "thumbs up", 0: "thumbs down"}.get(feedback.score, "") if feedback.score is not None else ""
    notes = [n for n in (verdict, f'"{feedback.comment}"' if feedback.comment else "",
                         "approved for training" if message.approved else "") if n]
    if notes:
        lines += ["", f"Feedback: {' · '.join(notes)}"]
    return lines
