"""The Chatbot: runs one support turn, from the customer's text to a persisted, cited reply."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from common.types import ChatRequest
from backends.base import Backend
from common.errors import ChatbotError
from chatbot.turn.memory import ConversationMemory
from chatbot.store.outcomes import keeps_customer_message, turn_texts
from chatbot.prompts.template import PromptTemplate
from chatbot.prompts.library import PromptLibrary, RenderedPrompt
from common.redaction import redact, redact_with_kinds
from chatbot.store.messages import HANDOFF
from chatbot.turn.citations import cited_numbers  # noqa: F401  (re-exported: callers read citations from here)
from chatbot.turn.reply import Reply, TurnMeta
from chatbot.routing.classifier import LLMClassifier
from chatbot.routing.routes import UNKNOWN, RouteChoice
from chatbot.routing.router import IntentRouter
from chatbot.triage.merge import merge_triage
from chatbot.triage.triage import Triage, TriageState, handoff_summary
from chatbot.turn.steps import FixedReply, clean_message, customer_context, customer_messages, retrieve, summarise
from chatbot.store.conversations import ConversationStore
from chatbot.handoff.queue import HandoffQueue, escalation_of
from chatbot.webhooks.events import CONVERSATION_ESCALATED, MESSAGE_CREATED, REPLY_COMPLETED, EventSink, ignore_event
from knowledge.store import KnowledgeBase
from common.types import Passage

STAGES = ("validate", "embed", "route", "retrieve", "render", "first_token", "persist")
log = logging.getLogger(__name__)


# What triage sees when no router is configured: an intent it cannot name.
UNROUTED = RouteChoice(intent=UNKNOWN, confidence=0.0, scores=[], abstained=True, template="general",
                       escalate=False, source="router")


def _keep_nothing(reply: "Reply", failed: bool) -> None:
    """The end of a preview turn: nothing is stored."""


@dataclass
class Preview:
    """A rendered first turn that is never stored: the prompt, its passages and a reply to stream."""

    prompt: RenderedPrompt
    passages: list[Passage]
    reply: Reply


class Chatbot:
    """Validates, embeds, retrieves, renders, streams and persists one turn at a time.

    The object keeps no conversation state of its own: every turn loads the conversation from
    the store, so several sessions, processes or app replicas can share one Chatbot's store.
    """

    def __init__(
        self,
        *,
        knowledge: KnowledgeBase,
        backend: Backend,
        store: ConversationStore,
        prompts: PromptLibrary | None = None,
        router: IntentRouter | None = None,
        triage: Triage | None = None,
        top_k: int = 4,
        max_message_chars: int = 4000,
        window_tokens: int = 1500,
        window_messages: int = 12,
        temperature: float | None = None,
        max_tokens: int | None = None,
        events: EventSink = ignore_event,
        handoff: HandoffQueue | None = None,
    ):
        self.knowledge = knowledge
        # Events for webhooks (message.created, reply.completed, conversation.escalated), and the
        # queue where a handed-off conversation waits for a person.
        self.events = events
        self.handoff = handoff
        self.backend = backend
        self.store = store
        self.prompts = prompts or PromptLibrary()
        self.router = router
        self.triage = triage or Triage()
        # An LLM backend can classify what the router abstains on; the offline one cannot.
        self.can_classify = router is not None and backend.can_classify
        self.top_k = top_k
        self.max_message_chars = max_message_chars
        self.window_tokens = window_tokens
        self.window_messages = window_messages
        # Deployment-wide overrides of every template's generation settings (None: the template's).
        self.temperature = temperature
        self.max_tokens = max_tokens

    def _memory(self, state: dict) -> ConversationMemory:
        memory = ConversationMemory(self.window_tokens, self.window_messages, count_tokens=self.backend.count_tokens)
        memory.load(state.get("memory", {}))
        return memory

    def memory_for(self, session_id: str) -> ConversationMemory:
        """The conversation's memory as stored."""
        return self._memory(self.store.state(session_id))

    def route(self, text: str, vector, memory: ConversationMemory) -> RouteChoice | None:
        """The message's intent: the router, with the backend as a fallback when it abstains."""
        if self.router is None:
            return None
        choice = self.router.route(text, vector, customer_messages(memory))
        if choice.abstained and self.can_classify:
            # The admin-edited "classifier" template, its intent list left as a slot for the classifier.
            prompt = self.prompts.render("classifier", passages=[], variables={"intents": "{intents}"})
            classifier = LLMClassifier(self.backend, max_tokens=prompt.max_tokens, system=prompt.system)
            choice = classifier.classify(text, list(self.router.routes.values()), fallback=choice)
        return choice

    def send(self, session_id: str, text: str, *, customer: dict | None = None, agent: str = "",
             again: str = "") -> Reply | None:
        """Prepare a turn (steps 1-5) and return its Reply to stream; None for an empty message.

        `again` names a turn whose message got no reply: that stored message is sent again (no second
        copy of it); a turn that is not such a message is ignored and the text starts a new turn.
        """
        started = time.perf_counter()
        stages: dict[str, float] = {}

        def lap(name: str, since: float) -> float:
            now = time.perf_counter()
            stages[name] = (now - since) * 1000
            return now

        text = clean_message(text, self.max_message_chars)
        if not text:
            return None
        # Secrets never reach the store, the search index, exports, training data or the model.
        text, redacted = redact_with_kinds(text)
        # Stored before anything else can fail: whatever happens to the reply, the message is kept.
        sent = again and self.store.retry_turn(session_id, again, agent=agent)
        if not sent:  # a message sent again was created before, and announced then
            sent = self.store.begin_turn(session_id, text, agent=agent)
            self.events(MESSAGE_CREATED, {"conversation_id": session_id, "message": {
                "role": "user", "content": text, "turn": sent["turn"], "agent": agent}})
        try:
            return self._prepare(session_id, text, redacted, sent, started, stages, lap,
                                 customer=customer, agent=agent)
        except Exception as exc:
            self._fail_before_reply(session_id, sent, exc, agent)
            raise

    def _fail_before_reply(self, session_id: str, sent: dict, exc: Exception, agent: str) -> None:
        """A turn that failed before its reply started: its message says why (it is already stored)."""
        reason = str(exc) if isinstance(exc, ChatbotError) else f"The turn failed ({exc.__class__.__name__})."
        try:
            self.store.finish_turn(session_id, sent, [], meta={"error": reason, "agent": agent,
                                                               "created_at": time.time()}, agent=agent)
        except ChatbotError as again:
            log.warning("Could not record a failed turn: %s", again)

    def _prepare(self, session_id: str, text: str, redacted: list[str], sent: dict, started: float,
                 stages: dict[str, float], lap: Callable[[str, float], float], *, customer: dict | None,
                 agent: str) -> Reply:
        """Steps 2-5 of a turn whose message is stored: embed, route and triage, retrieve, render."""
        mark = lap("validate", started)
        vector = self.knowledge.embedder.embed_one(text)
        mark = lap("embed", mark)
        state = self.store.state(session_id)
        memory = self._memory(state)
        triage_state = TriageState.from_dict(state.get("triage"))
        # As read: the turn's triage changes are merged from here into the state stored when it ends.
        base = TriageState.from_dict(state.get("triage"))
        choice = self.route(text, vector, memory)
        verdict = self.triage.assess(
            text, choice or UNROUTED, triage_state, customer_tier=(customer or {}).get("tier", "standard")
        )
        mark = lap("route", mark)
        meta = TurnMeta(
            session_id=session_id, backend=self.backend.name, model=self.backend.model, stages_ms=stages,
            summarised_messages=memory.summarised_count, agent=agent,
            route=choice.to_dict() if choice else {}, triage=verdict.to_dict(), redacted=redacted,
        )
        if triage_state.escalated:
            return self._handoff(session_id, text, memory, triage_state, meta, started, sent, base)
        passages = retrieve(self.knowledge, text, vector, customer_messages(memory), self.top_k)
        mark = lap("retrieve", mark)
        summary, recent = memory.context()
        prompt = self.prompts.render(
            choice.template if choice else "general", passages=passages, summary=summary,
            customer=customer_context(verdict, triage_state), query=text, query_vector=vector,
        )
        request = self._request(prompt, recent, text, passages)
        lap("render", mark)
        meta.prompt_name, meta.prompt_version, meta.prompt_hash = prompt.name, prompt.version, prompt.hash
        meta.retrieved = [p.to_dict() for p in passages]
        return Reply(session_id, text, request, meta, started, self.backend,
                     on_end=lambda reply, failed: self.end_turn(reply, base, failed, sent),
                     reasoning=prompt.chain_of_thought, triage_state=triage_state)

    def preview(self, text: str, *, template: PromptTemplate, version: int, customer_tier: str = "standard",
                variables: dict | None = None, top_k: int | None = None) -> "Preview":
        """The first turn of a new conversation rendered with `template` (a draft, say), never stored.

        The same steps as `send` (validation, embedding, routing and triage, retrieval, the
        customer context, rendering), so the admin sees exactly what a chat would send. Stream
        `preview.reply` for a test reply from this Chatbot's backend. Raises InputRejected for
        a message over the length limit.
        """
        text = redact(clean_message(text, self.max_message_chars))
        vector = self.knowledge.embedder.embed_one(text) if text else None
        memory = self._memory({})
        triage_state = TriageState()
        choice = self.route(text, vector, memory) if text else None
        verdict = self.triage.assess(text, choice or UNROUTED, triage_state, customer_tier=customer_tier)
        k = self.top_k if top_k is None else top_k
        passages = self.knowledge.search(text, k=k, query_vector=vector) if text and k else []
        prompt = self.prompts.render_template(
            template, version, passages=passages, customer=customer_context(verdict, triage_state), query=text,
            query_vector=vector, variables=variables,
        )
        request = self._request(prompt, [], text, passages)
        meta = TurnMeta(session_id="", backend=self.backend.name, model=self.backend.model,
                        prompt_name=prompt.name, prompt_version=version, prompt_hash=prompt.hash,
                        route=choice.to_dict() if choice else {}, triage=verdict.to_dict(),
                        retrieved=[p.to_dict() for p in passages])
        reply = Reply("", text, request, meta, time.perf_counter(), self.backend, on_end=_keep_nothing,
                      reasoning=prompt.chain_of_thought)
        return Preview(prompt=prompt, passages=passages, reply=reply)

    def _request(self, prompt: RenderedPrompt, recent: list[dict], text: str, passages: list[Passage]) -> ChatRequest:
        """The backend request for a rendered prompt; deployment overrides win over the template."""
        return ChatRequest(
            system=prompt.system,
            messages=[*recent, {"role": "user", "content": text}],
            temperature=prompt.temperature if self.temperature is None else self.temperature,
            max_tokens=prompt.max_tokens if self.max_tokens is None else self.max_tokens,
            repetition_penalty=prompt.repetition_penalty, no_repeat_ngram_size=prompt.no_repeat_ngram_size,
            passages=passages,
            query=text,
        )

    def _handoff(self, session_id: str, text: str, memory: ConversationMemory, triage_state: TriageState,
                 meta: TurnMeta, started: float, sent: dict, base: TriageState) -> Reply:
        """A handed-off conversation: say so once, with a brief for the human; then stay silent."""
        notice = self.triage.announce_handoff(triage_state) or ""
        if notice:
            earlier = [m.as_chat() for m in self.store.messages(session_id) if m.turn != sent["turn"]]
            history = [*earlier, {"role": "user", "content": text}]
            triage_state.handoff_summary = handoff_summary(triage_state, history)
            meta.triage["handoff_summary"] = triage_state.handoff_summary
        meta.backend, meta.model = HANDOFF, ""
        request = ChatRequest(system="", messages=[{"role": "user", "content": text}], query=text)
        return Reply(session_id, text, request, meta, started, FixedReply(notice),
                     on_end=lambda reply, failed: self._end_handoff(reply, base, failed, sent, bool(notice)),
                     triage_state=triage_state)

    def _end_handoff(self, reply: Reply, base: TriageState, failed: bool, sent: dict,
                     announced: bool) -> None:
        """Store a handed-off turn; the escalating one opens a case in the queue, later ones wait for a person."""
        waiting = not announced and not failed
        self.end_turn(reply, base, failed, sent)  # a message with no reply reads as waiting for a person
        if failed:
            return
        verdict, state = reply.meta.triage, reply.triage_state or TriageState()
        escalation = escalation_of(verdict, brief=state.handoff_summary, message=reply.user_text)
        try:
            if self.handoff is not None and waiting:
                self.handoff.customer_waiting(reply.session_id)
            elif self.handoff is not None:
                self.handoff.escalate(reply.session_id, **escalation)
        except ChatbotError as exc:  # the turn is stored; the page must not fail on the queue's record
            log.warning("The handoff queue missed conversation %s: %s", reply.session_id, exc)
        if waiting:
            return
        self.events(CONVERSATION_ESCALATED, {"conversation_id": reply.session_id, **escalation,
                                             "notice": reply.text})

    def ask(self, session_id: str, text: str) -> Reply | None:
        """Send and consume a whole turn (CLI, tests); BackendError propagates after persisting."""
        reply = self.send(session_id, text)
        if reply is not None:
            reply.consume()
        return reply

    def end_turn(self, reply: Reply, base: TriageState | None, failed: bool, sent: dict | None = None) -> None:
        """Store a finished turn: the customer's message, the reply unless it failed or was empty, memory and triage.

        `sent` is the customer's message as `begin_turn` stored it; it is completed in place. A
        reply that stopped early keeps the text that arrived, marked interrupted; one that failed
        before any text leaves the reason on the customer's message. The model sees later only
        answers (a cut-off one marked so), never a blank reply, a refusal or an interrupted reply.
        Memory and triage are merged into the state as stored when the turn ends (`base` is the
        triage state the turn read): another tab's turn stored meanwhile is kept, not overwritten.
        """
        mark = time.perf_counter()
        added: list[tuple[str, str]] = []
        if failed or keeps_customer_message(reply.meta.outcome):
            added.append(("user", reply.user_text))
        stored, remembered = turn_texts(reply.text, reply.meta.outcome, failed)
        if failed and reply.meta.interrupted and reply.text:
            stored = reply.text  # what arrived before it stopped, shown marked interrupted
        meta = reply.meta.to_dict()
        replies: list[dict] = []
        if stored is not None:
            replies.append({"role": "assistant", "content": stored, "meta": meta})
        if remembered is not None:
            added.append(("assistant", remembered))
        started = sent.get("ts") if sent is not None else None

        def update(current: dict) -> dict:
            return self._merged_state(current, added, reply, replies, base, started)

        if sent is None:
            user = {"role": "user", "content": reply.user_text, **({} if replies else {"meta": meta})}
            self.store.append(reply.session_id, [user, *replies], update=update, agent=reply.meta.agent)
        else:
            self.store.finish_turn(reply.session_id, sent, replies, meta=None if replies else meta,
                                   agent=reply.meta.agent, update=update)
        reply.meta.stages_ms["persist"] = (time.perf_counter() - mark) * 1000
        if replies and reply.meta.backend != HANDOFF:
            self.events(REPLY_COMPLETED, _completed(reply, stored or "", failed))

    def _merged_state(self, current: dict, added: list[tuple[str, str]], reply: Reply, replies: list[dict],
                      base: TriageState | None, started: float | None) -> dict:
        """The conversation state as stored now (`current`) with this turn's messages and triage in it."""
        memory = self._memory(current)
        for role, content in added:
            memory.add(role, content)
        if added and added[-1][0] == "assistant":
            reply.meta.summary_updated = memory.fold(self._summarise)
            if replies:
                replies[-1]["meta"] = reply.meta.to_dict()
        state = {**current, "memory": memory.to_dict()}
        newest = float(current.get("turn_started") or 0.0)
        if started is not None:
            state["turn_started"] = max(newest, float(started))
        if reply.triage_state is not None:
            mine = reply.triage_state
            if base is not None:
                later = started is None or float(started) >= newest
                mine = merge_triage(base, mine, TriageState.from_dict(current.get("triage")), later=later)
            state["triage"] = mine.to_dict()
        return state

    def _summarise(self, previous: str, folded: list[dict]) -> str:
        """Fold old turns with the backend where it can summarise, extractively otherwise."""
        return summarise(self.backend, self.prompts, previous, folded)


def _completed(reply: Reply, stored: str, failed: bool) -> dict:
    """The data of a reply.completed event: the reply and what the turn did."""
    meta = reply.meta
    return {"conversation_id": reply.session_id, "message": reply.user_text, "reply": stored,
            "outcome": meta.outcome, "interrupted": meta.interrupted or failed, "error": meta.error,
            "intent": (meta.route or {}).get("intent", ""), "triage": meta.triage,
            "prompt": {"name": meta.prompt_name, "version": meta.prompt_version},
            "backend": meta.backend, "model": meta.model, "citations": meta.citations,
            "usage": {"input_tokens": meta.input_tokens, "output_tokens": meta.output_tokens},
            "latency_ms": round(meta.latency_ms, 1), "agent": meta.agent}
