"""Searching stored conversations: filters on their summaries, and text matched as an agent may see it."""

from __future__ import annotations

import json
from dataclasses import dataclass

from chatbot.store.analytics import ConversationSummary
from chatbot.store.conversations import BATCH, ConversationStore, _key
from chatbot.store.faults import store_call
from chatbot.store.messages import Message
from chatbot.store.server import as_text
from common.redaction import redact


def _holds(text: str, needle: str) -> bool:
    """Whether `needle` (case-folded) is in the text as an agent may see it: secrets in conversations
    stored before redaction existed never match. Redacting only the few texts that match keeps a
    search over thousands of conversations fast."""
    return needle in text.casefold() and needle in redact(text).casefold()


@dataclass(frozen=True)
class SearchPage:
    """A search's matches, most recent first, and `resume`: where a scan that used up its budget
    stopped, (`updated`, `id`) of the last conversation it looked at, to pass as `before` for the
    rest (None when the scan saw every conversation, or filled the page first)."""

    matches: list[ConversationSummary]
    resume: tuple[float, str] | None = None


def search_page(store: ConversationStore, *, text: str = "", intent: str = "",
                escalated: bool | None = None, since: float | None = None, until: float | None = None,
                agent: str = "", limit: int = 50, scan: int = 2000,
                before: tuple[float, str] | None = None) -> SearchPage:
    """Conversations started in [since, until] that match every filter given, most recent first.

    `before` is where a page ends, (`updated`, `id`) of its last conversation: the next page holds
    those after it in this order (last activity, then id, both descending, as the index sorts ties).

    Text matches the messages' content, case-insensitively. Without a search index this scans
    at most `scan` conversations (by last activity), which is plenty for a support desk's
    working set and keeps a search to a few pipelined round trips; past it, `resume` says where
    to go on.
    """
    needle = text.strip().casefold()
    matches: list[ConversationSummary] = []
    last: tuple[float, str] | None = None
    ids = store.ids_between(since, before[0] if before else None, agent=agent, limit=scan)
    for start in range(0, len(ids), BATCH):
        summaries = store.summaries(ids[start:start + BATCH])
        if summaries:
            last = (summaries[-1].updated, summaries[-1].id)
        candidates = [
            s for s in summaries
            if (since is None or s.created >= since) and (until is None or s.created <= until)
            and (before is None or (s.updated, s.id) < before)
            and (not intent or intent in s.intents)
            and (escalated is None or s.escalated == escalated)
        ]
        if needle and candidates:
            texts = _contents(store, [s.id for s in candidates])
            candidates = [s for s in candidates if _holds(s.title, needle) or _holds(texts[s.id], needle)]
        matches += candidates
        if len(matches) >= limit:
            return SearchPage(matches[:limit])
    ran_out = len(ids) >= scan and last is not None and (before is None or last < before)
    return SearchPage(matches, last if ran_out else None)


@store_call
def _contents(store: ConversationStore, ids: list[str]) -> dict[str, str]:
    """Every message's text per conversation."""
    pipe = store.client.pipeline(transaction=False)
    for session_id in ids:
        pipe.get(_key(session_id, "text"))
    texts = dict(zip(ids, pipe.execute()))
    # Conversations written before the text key existed: read their messages instead.
    older = [sid for sid, text in texts.items() if text is None]
    pipe = store.client.pipeline(transaction=False)
    for session_id in older:
        pipe.lrange(_key(session_id, "messages"), 0, -1)
    for session_id, raws in zip(older, pipe.execute()):
        texts[session_id] = "\n".join(Message.from_stored(json.loads(raw)).content for raw in raws)
    return {sid: as_text(text) for sid, text in texts.items()}
