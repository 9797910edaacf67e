"""Pure functions over stored conversations: the summary kept per conversation, stats, exports."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from statistics import mean
from typing import Any, Iterable

from chatbot.store.outcomes import EMPTY, outcome_notice
from common.redaction import redact
from common.timezones import SECOND_FORMAT, UTC, DisplayZone

PERCENTILES = (50, 90, 95, 99)
HANDOFF = "handoff"  # the backend name of the notice written when a person takes over
TITLE_CHARS = 120
SPEAKERS = {"user": "Customer", "assistant": "Assistant"}


# A customer message is stored with this status when it is sent, and loses it when its reply ends.
PENDING = "pending"


def no_reply(meta: dict) -> bool:
    """A customer message's turn got no reply: the backend failed, or answered with nothing."""
    return bool(meta.get("error")) or meta.get("outcome") == EMPTY


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
            sentiment=h.get("sentiment", ""), priority=int(float(h.get("priority") or 0)),
            state=h.get("triage_state", ""), backend=h.get("backend", ""), model=h.get("model", ""),
        )

    def to_dict(self) -> dict:
        return asdict(self)


def count_turns(messages: Iterable[dict]) -> tuple[int, int]:
    """Turns and failed turns among stored messages: the one definition every page counts by.

    A turn is a customer message and what answered it: a model's reply, the handoff notice, or
    nothing once a person has the conversation (the message is kept for them). A customer message
    that got no reply because the backend failed or answered with nothing is a failed turn,
    counted apart; one still waiting for its reply is not counted yet.
    """
    turns = failed = 0
    for message in messages:
        if message.get("role") == "user" and message.get("status") != PENDING:  # counted when its turn ends
            if no_reply(message.get("meta") or {}):
                failed += 1
            else:
                turns += 1
    return turns, failed


def summary_fields(messages: list[dict]) -> tuple[dict[str, str], dict[str, int], str]:
    """What a turn changes in the conversation's summary hash: fields to set, counters, title."""
    sets: dict[str, str] = {}
    incr: dict[str, int] = {"messages": len(messages)}
    title = next((m["content"][:TITLE_CHARS] for m in messages if m.get("role") == "user"), "")
    turns, failed = count_turns(messages)
    for counter, value in (("turns", turns), ("failed", failed)):
        if value:
            incr[counter] = value
    for message in messages:
        meta = message.get("meta") or {}
        if not meta:
            continue
        for name in ("backend", "model"):
            if meta.get(name) and meta.get("backend") != HANDOFF:
                sets[name] = str(meta[name])
        route = meta.get("route") or {}
        if route.get("intent"):
            sets["last_intent"] = str(route["intent"])
            incr[f"intent:{route['intent']}"] = incr.get(f"intent:{route['intent']}", 0) + 1
        triage = meta.get("triage") or {}
        if triage.get("sentiment"):
            sets["sentiment"] = str(triage["sentiment"])
        if triage.get("priority") is not None and triage.get("priority") != "":
            sets["priority"] = str(triage["priority"])
        if triage.get("state"):
            sets["triage_state"] = str(triage["state"])
        if triage.get("escalate"):
            sets["escalated"] = "1"
            sets["escalation_reasons"] = json.dumps(list(triage.get("reasons") or []), ensure_ascii=False)
    return sets, incr, title


def merge_feedback(messages: list[dict], raw: dict) -> list[dict]:
    """Attach each reply's stored feedback (`feedback` dict, `approved` flag) to the message list."""
    by_index: dict[int, dict[str, str]] = {}
    for name, value in raw.items():
        index, _, part = _decode(name).partition(":")
        by_index.setdefault(int(index), {})[part] = _decode(value)
    for index, parts in by_index.items():
        if index >= len(messages):
            continue
        message = messages[index]
        if "score" in parts or "comment" in parts:
            message["feedback"] = {
                "score": int(parts["score"]) if "score" in parts else None,
                "comment": parts.get("comment", ""), "at": float(parts.get("at", 0)),
            }
        if "approved" in parts:
            message["approved"] = True
            message["approved_at"] = float(parts["approved"])
    return messages


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
            meta = message.get("meta") or {}
            if not meta:
                continue  # a customer message whose reply carries the turn's metadata
            if message.get("role") == "assistant":
                kind = HANDOFF if meta.get("backend") == HANDOFF else "reply"
            else:
                kind = "failed" if no_reply(meta) else HANDOFF
            replied = kind == "reply"
            ts = float(message.get("ts") or meta.get("created_at") or 0)
            if since is not None and ts < since:
                continue
            route, triage = meta.get("route") or {}, meta.get("triage") or {}
            feedback = message.get("feedback") or {}
            records.append({
                "conversation": conversation.get("id", ""), "ts": ts, "day": zone.day(ts),
                "kind": kind, "failed": kind == "failed",
                "intent": route.get("intent") or "(not routed)",
                "sentiment": triage.get("sentiment") or "",
                "sentiment_score": triage.get("sentiment_score"),
                "priority": triage.get("priority"),
                "escalate": bool(triage.get("escalate")),
                "reasons": list(triage.get("reasons") or []),
                "backend": meta.get("backend") or "(unknown)", "model": meta.get("model") or "",
                "input_tokens": int(meta.get("input_tokens") or 0) if replied else 0,
                "output_tokens": int(meta.get("output_tokens") or 0) if replied else 0,
                "latency_ms": meta.get("latency_ms") if replied else None,
                "ttft_ms": (meta.get("ttft_ms") or None) if replied else None,
                "feedback": feedback.get("score"), "comment": feedback.get("comment", ""),
                "approved": bool(message.get("approved")),
            })
    return records


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
    messages = [{**m, "content": redact(m["content"])} if isinstance(m.get("content"), str) else m
                for m in conversation.get("messages", [])]
    return {**conversation, "messages": messages}


def to_json(conversation: dict) -> str:
    """The whole conversation as stored: summary fields, state, messages with their metadata."""
    return json.dumps(without_secrets(conversation), ensure_ascii=False, indent=2)


def _when(ts: float | None, zone: DisplayZone) -> str:
    return zone.labelled(ts, SECOND_FORMAT, empty="?")


def _reply_facts(meta: dict) -> list[str]:
    facts = []
    route, triage = meta.get("route") or {}, meta.get("triage") or {}
    if route.get("intent"):
        facts.append(f"intent {route['intent']}" + (f" ({route['confidence']:.2f})"
                                                     if isinstance(route.get("confidence"), float) else ""))
    if triage.get("sentiment"):
        facts.append(f"sentiment {triage['sentiment']}")
    if triage.get("priority") not in (None, ""):
        facts.append(f"priority {triage['priority']}")
    if triage.get("escalate"):
        facts.append("escalated" + (f": {', '.join(triage.get('reasons') or [])}" if triage.get("reasons") else ""))
    if meta.get("backend"):
        facts.append(f"{meta['backend']} · {meta.get('model', '')}".rstrip(" ·"))
    if meta.get("latency_ms"):
        facts.append(f"{meta['latency_ms']:,.0f} ms")
    if meta.get("prompt_name"):
        facts.append(f"prompt {meta['prompt_name']} v{meta.get('prompt_version')}")
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
        meta = message.get("meta") or {}
        speaker = SPEAKERS.get(message["role"], message["role"])
        lines += ["", f"### {speaker} · {_when(message.get('ts'), zone)}", "", message["content"]]
        if message["role"] != "assistant":
            # A customer message carries the turn's metadata only when no reply was written.
            if meta.get("error"):
                lines += ["", f"> No reply: {meta['error']}"]
            elif outcome_notice(meta):
                lines += ["", f"> {outcome_notice(meta)}"]
            elif message.get("status") == PENDING:
                lines += ["", "> Waiting for the reply."]
            elif meta:
                lines += ["", "> With a person: the assistant drafted no reply."]
            if meta and _reply_facts(meta):
                lines += ["", f"*{' · '.join(_reply_facts(meta))}*"]
            continue
        if meta.get("interrupted"):
            lines += ["", f"> Interrupted: {meta.get('error') or 'the reply stopped before its end.'}"]
        retrieved = meta.get("retrieved") or []
        cited = [n for n in meta.get("citations") or [] if 1 <= n <= len(retrieved)]
        if cited:
            lines += ["", "Sources:"]
            lines += [f"- [{n}] {retrieved[n - 1].get('title', '')} ({retrieved[n - 1].get('source', '')})"
                      for n in cited]
        if outcome_notice(meta):  # cut off or refused
            lines += ["", f"> {outcome_notice(meta)}"]
        facts = _reply_facts(meta)
        if facts:
            lines += ["", f"*{' · '.join(facts)}*"]
        feedback = message.get("feedback") or {}
        verdict = {1: "thumbs up", 0: "thumbs down"}.get(feedback.get("score"), "")
        notes = [n for n in (verdict, f'"{feedback["comment"]}"' if feedback.get("comment") else "",
                             "approved for training" if message.get("approved") else "") if n]
        if notes:
            lines += ["", f"Feedback: {' · '.join(notes)}"]
    return "\n".join(lines) + "\n"
