"""CSV exports that a spreadsheet opens as data: conversations, one conversation's messages, turns.

Every text cell that a spreadsheet would read as a formula (it starts with `=`, `+`, `-`, `@`,
a tab or a carriage return) is prefixed with a single quote, and every cell is quoted: OWASP's
"CSV Injection" mitigation (https://owasp.org/www-community/attacks/CSV_Injection). Customers
write the messages and uploaders name the files, so a message such as `=HYPERLINK(...)` must not
run in the agent's spreadsheet. Numbers we computed (a negative sentiment score) stay numbers.
Times are given twice: in the reader's zone (named in the column header) and in UTC, ISO 8601.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from chatbot.store.analytics import SPEAKERS, ConversationSummary, turn_records, without_secrets
from common.timezones import SECOND_FORMAT, UTC, DisplayZone

# OWASP's list of the characters that make a spreadsheet cell a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """`value`, with a single quote in front if it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV document (RFC 4180, every cell quoted, CRLF line ends) with every cell made safe."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL)
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow(["" if cell is None else safe_cell(cell) for cell in row])
    return out.getvalue()


def _utc(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds") if ts else ""


def _times(zone: DisplayZone, *names: str) -> list[str]:
    return [h for name in names for h in (f"{name} ({zone.label})", f"{name} (UTC, ISO 8601)")]


def _both(zone: DisplayZone, ts: float | None) -> list[str]:
    return [zone.format(ts, SECOND_FORMAT, empty=""), _utc(ts)]


def conversations_csv(found: Iterable[ConversationSummary], zone: DisplayZone = UTC) -> str:
    """The History list: one row per conversation."""
    header = [*_times(zone, "started", "last active"), "turns", "intents", "escalated", "sentiment", "agents",
              "title", "id"]
    rows = ([*_both(zone, s.created), *_both(zone, s.updated), s.turns, ", ".join(s.intents), s.escalated,
             s.sentiment, ", ".join(s.agents), s.title, s.id] for s in found)
    return to_csv(header, rows)


def conversation_csv(conversation: dict, zone: DisplayZone = UTC) -> str:
    """One conversation, one row per message (secrets redacted), with its turn's routing and triage."""
    conversation = without_secrets(conversation)
    header = [*_times(zone, "time"), "speaker", "text", "intent", "sentiment", "priority", "escalated", "backend",
              "model", "latency ms", "feedback", "comment", "error"]
    rows = []
    for message in conversation.get("messages", []):
        meta, feedback = message.meta, message.feedback
        rows.append([*_both(zone, message.ts), SPEAKERS.get(message.role, message.role), message.content,
                     meta.intent if meta else "", meta.sentiment if meta else "",
                     "" if meta is None or meta.priority is None else meta.priority,
                     meta.handed_off if meta and meta.triage else "",
                     meta.backend if meta else "", meta.model if meta else "",
                     meta.latency_ms if meta and meta.latency_ms else "",
                     {1: "up", 0: "down"}.get(feedback.score, "") if feedback else "",
                     feedback.comment if feedback else "", meta.error if meta else ""])
    return to_csv(header, rows)


TURN_COLUMNS = ("conversation", "kind", "intent", "sentiment", "sentiment_score", "priority", "escalate", "backend",
                "model", "input_tokens", "output_tokens", "latency_ms", "ttft_ms", "feedback", "comment")


def turns_csv(conversations: list[dict], since: float | None = None, zone: DisplayZone = UTC) -> str:
    """What the Stats page counts: one row per turn from `since` on (`analytics.turn_records`)."""
    records = turn_records(conversations, since, zone)
    header = [*_times(zone, "time"), f"day ({zone.label})", *TURN_COLUMNS, "reasons"]
    rows = ([*_both(zone, r["ts"]), r["day"], *(r[c] for c in TURN_COLUMNS), ", ".join(r["reasons"])]
            for r in sorted(records, key=lambda r: r["ts"]))
    return to_csv(header, rows)
