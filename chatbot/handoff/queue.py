"""The handoff queue in Redis: escalated conversations, oldest first, claimed by one agent at a time.

Keys:
  chatbot:handoff:queue      sorted set: conversation id -> when it was escalated (open cases only)
  chatbot:handoff:case:ID    hash: the escalation (brief, reasons, sentiment, priority, message, at),
                             status (waiting, claimed, closed, handed_back), agent, waiting count

A case records the triage of the message that escalated the conversation; later messages never
change it. Claiming is one Lua script, so two agents clicking Claim at once get one winner.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, Callable, TypeVar

import redis

from chatbot.handoff.status import AGENT_ROLE
from chatbot.store.conversations import ConversationStore, describe_fault
from chatbot.store.server import as_text
from chatbot.triage.triage import Triage, TriageState
from chatbot.webhooks.events import MESSAGE_CREATED, EventSink, ignore_event
from common.errors import ChatbotError, InputRejected, StoreUnavailable
from common.redaction import redact

QUEUE = "chatbot:handoff:queue"
WAITING, CLAIMED, CLOSED, HANDED_BACK = "waiting", "claimed", "closed", "handed_back"

# KEYS: case. ARGV: agent, now. Returns 1 claimed (or already this agent's), 0 someone else's, -1 no open case.
CLAIM = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'claimed' then
  if redis.call('HGET', KEYS[1], 'agent') == ARGV[1] then return 1 end
  return 0
end
if status ~= 'waiting' then return -1 end
redis.call('HSET', KEYS[1], 'status', 'claimed', 'agent', ARGV[1], 'claimed_at', ARGV[2])
return 1
"""
# KEYS: case. Counts a customer message on an open case; returns the new count (0: no open case).
COUNT_WAITING = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'waiting' and status ~= 'claimed' then return 0 end
return redis.call('HINCRBY', KEYS[1], 'waiting', 1)
"""


F = TypeVar("F", bound=Callable[..., Any])


def _queue_call(method: F) -> F:
    """Every Redis fault of the queue becomes StoreUnavailable, as in the conversation store."""

    @wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except redis.RedisError as exc:
            raise StoreUnavailable(describe_fault(exc)) from exc

    return wrapper  # type: ignore[return-value]


class HandoffConflict(ChatbotError):
    """The case is not this agent's to act on: another agent claimed it, or it is no longer open."""


def _case_key(session_id: str) -> str:
    return f"chatbot:handoff:case:{session_id}"


@dataclass
class HandoffCase:
    """One escalated conversation as the queue shows it."""

    conversation: str
    escalated_at: float
    brief: str = ""
    reasons: list[str] = field(default_factory=list)
    sentiment: str = ""
    priority: int = 0
    message: str = ""  # the customer message that escalated it
    status: str = WAITING
    agent: str = ""
    claimed_at: float = 0.0
    waiting: int = 0  # customer messages since the escalation (or the agent's last reply) with no answer

    @classmethod
    def from_hash(cls, raw: dict) -> "HandoffCase":
        h = {as_text(k): as_text(v) for k, v in raw.items()}
        return cls(conversation=h["conversation"], escalated_at=float(h.get("escalated_at", 0)),
                   brief=h.get("brief", ""), reasons=json.loads(h.get("reasons") or "[]"),
                   sentiment=h.get("sentiment", ""), priority=int(float(h.get("priority") or 0)),
                   message=h.get("message", ""), status=h.get("status", WAITING), agent=h.get("agent", ""),
                   claimed_at=float(h.get("claimed_at") or 0), waiting=int(h.get("waiting") or 0))


def escalation_of(verdict: dict, *, brief: str, message: str, reasons: list[str] | None = None) -> dict:
    """What a case (`HandoffQueue.escalate`) and the `conversation.escalated` event record of a handoff:
    triage's verdict on the conversation's latest customer message (its sentiment and priority), the
    brief for the person taking over, and that message. `reasons` default to the verdict's."""
    return {"brief": brief, "reasons": list(verdict.get("reasons") or []) if reasons is None else list(reasons),
            "sentiment": str(verdict.get("sentiment") or ""), "priority": int(verdict.get("priority") or 0),
            "message": message}


class HandoffQueue:
    """Escalations in, agents' claims, replies, closes and hand-backs out; over the conversation store."""

    def __init__(self, store: ConversationStore, events: EventSink = ignore_event,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.events = events
        self.clock = clock
        self._claim = store.client.register_script(CLAIM)
        self._count = store.client.register_script(COUNT_WAITING)

    @property
    def client(self) -> redis.Redis:
        return self.store.client

    @_queue_call
    def escalate(self, session_id: str, *, brief: str, reasons: list[str], sentiment: str, priority: int,
                 message: str) -> HandoffCase:
        """Open a case for a conversation just handed off (the triage of the message that did it)."""
        now = self.clock()
        case = HandoffCase(conversation=session_id, escalated_at=now, brief=brief, reasons=list(reasons),
                           sentiment=sentiment, priority=int(priority), message=message[:1000])
        fields = {"conversation": session_id, "escalated_at": repr(now), "brief": brief,
                  "reasons": json.dumps(case.reasons), "sentiment": sentiment, "priority": str(case.priority),
                  "message": case.message, "status": WAITING, "agent": "", "claimed_at": "0", "waiting": "0"}
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(_case_key(session_id))
        pipe.hset(_case_key(session_id), mapping=fields)
        pipe.zadd(QUEUE, {session_id: now})
        if self.store.ttl:
            pipe.expire(_case_key(session_id), self.store.ttl)  # a case lives as long as its conversation
        pipe.execute()
        return case

    @_queue_call
    def customer_waiting(self, session_id: str) -> int:
        """Count one more customer message waiting for a person; returns the count (0: no open case)."""
        return int(self._count(keys=[_case_key(session_id)], client=self.client) or 0)

    @_queue_call
    def open_cases(self) -> list[HandoffCase]:
        """Every case waiting or claimed, the oldest escalation first."""
        ids = [as_text(i) for i in self.client.zrange(QUEUE, 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for session_id in ids:
            pipe.hgetall(_case_key(session_id))
        return [HandoffCase.from_hash(raw) for raw in pipe.execute() if raw]

    @_queue_call
    def case(self, session_id: str) -> HandoffCase | None:
        raw = self.client.hgetall(_case_key(session_id))
        return HandoffCase.from_hash(raw) if raw else None

    @_queue_call
    def claim(self, session_id: str, agent: str) -> HandoffCase:
        """Take a waiting case for `agent`; HandoffConflict when another agent has it or it is closed."""
        agent = _agent_name(agent)
        won = int(self._claim(keys=[_case_key(session_id)], args=[agent, repr(self.clock())], client=self.client))
        case = self.case(session_id)
        if won == 1 and case is not None:
            return case
        if won == 0 and case is not None:
            raise HandoffConflict(f"{case.agent} has already claimed this conversation.")
        raise HandoffConflict("This conversation is no longer waiting for a person.")

    def _owned(self, session_id: str, agent: str) -> HandoffCase:
        case = self.case(session_id)
        if case is None or case.status != CLAIMED:
            raise HandoffConflict("Claim the conversation first: only the agent who claimed it may act on it.")
        if case.agent != agent:
            raise HandoffConflict(f"{case.agent} has claimed this conversation.")
        return case

    @_queue_call
    def reply(self, session_id: str, agent: str, text: str) -> dict:
        """Store a person's reply (role "agent") in the conversation; the messages waiting are answered."""
        agent = _agent_name(agent)
        self._owned(session_id, agent)
        text = redact(text.strip())
        if not text:
            raise InputRejected("The reply is empty: write something to send.")
        message = {"role": AGENT_ROLE, "content": text, "meta": {"agent": agent}}
        # Versioned: a turn stored meanwhile is kept, and a turn ending later merges onto this state.
        self.store.append(session_id, [message], update=lambda current: _remembered(current, text), agent=agent)
        self.client.hset(_case_key(session_id), "waiting", "0")
        self.events(MESSAGE_CREATED, {"conversation_id": session_id, "message": {"role": AGENT_ROLE,
                                      "content": text, "agent": agent}})
        return message

    def close(self, session_id: str, agent: str) -> None:
        """The person resolved it: the case leaves the queue, the conversation is closed (a new message reopens it)."""
        self._finish(session_id, _agent_name(agent), CLOSED)

    def hand_back(self, session_id: str, agent: str) -> None:
        """The bot answers this conversation again from its next message; the case leaves the queue."""
        self._finish(session_id, _agent_name(agent), HANDED_BACK)

    @_queue_call
    def _finish(self, session_id: str, agent: str, outcome: str) -> None:
        self._owned(session_id, agent)
        self._release(session_id, agent, outcome)

    @_queue_call
    def release(self, session_id: str, outcome: str, by: str) -> bool:
        """Close (CLOSED) or hand back (HANDED_BACK) whoever holds the case, for a help desk where people
        work it (`by`: who did, "Chatwoot"); False when the conversation was not with a person."""
        case = self.case(session_id)
        escalated = TriageState.from_dict(self.store.state(session_id).get("triage")).escalated
        if not escalated and (case is None or case.status not in (WAITING, CLAIMED)):
            return False
        self._release(session_id, (case.agent if case and case.agent else "") or by, outcome)
        return True

    def _release(self, session_id: str, agent: str, outcome: str) -> None:
        # Versioned (see ConversationStore.finish_turn): a turn that read the state before this
        # close or hand-back merges its own changes onto it instead of writing the handoff back.
        self.store.append(session_id, [], update=lambda current: _released(current, outcome), agent=agent)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(_case_key(session_id), mapping={"status": outcome, "agent": agent, "closed_at": repr(self.clock())})
        pipe.zrem(QUEUE, session_id)
        pipe.execute()


def _released(state: dict, outcome: str) -> dict:
    """The conversation state once a person closed the case (CLOSED) or handed it back (HANDED_BACK)."""
    triage = TriageState.from_dict(state.get("triage"))
    if outcome == CLOSED:
        triage.state = "escalated"  # what the case was, whatever the stored triage says (an older state)
        Triage().close(triage)
    else:
        # Back to the bot mid-case: not "closed", the customer's problem may still be open.
        triage.escalated, triage.handoff_announced, triage.state = False, False, "resolving"
    return {**state, "triage": triage.to_dict()}


def _remembered(state: dict, text: str) -> dict:
    """The conversation state with a person's reply in the assistant's memory, so that after a hand-back
    the model knows what the support team said (as the desk's side of the conversation)."""
    memory = dict(state.get("memory") or {})
    memory["messages"] = [*(memory.get("messages") or []),
                          {"role": "assistant", "content": f"(A person on the support team replied:) {text}"}]
    return {**state, "memory": memory}


def _agent_name(agent: str) -> str:
    agent = (agent or "").strip()
    if not agent:
        raise InputRejected("Say who you are: an agent's name is needed to claim or answer a conversation.")
    return agent[:80]
