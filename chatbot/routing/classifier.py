"""The LLM fallback for intent routing: an API backend classifies what the router abstains on.

It asks for one JSON object at temperature 0 (primary intent, confidence, secondary
intents, reasoning); a malformed reply is retried once, then the router's answer stands.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Sequence

from common.errors import BackendError
from chatbot.routing.routes import DEFAULT_TEMPLATE, TOP_K, UNKNOWN, Route, RouteChoice

if TYPE_CHECKING:
    from backends.base import Backend

log = logging.getLogger(__name__)

CLASSIFIER_SYSTEM = """You classify one customer-support message into exactly one intent.
Intents:
{intents}
Answer with one JSON object and nothing else:
{"intent": "<one intent name, or unknown>", "confidence": <0..1>,
 "secondary": [{"intent": "<name>", "confidence": <0..1>}], "reasoning": "<one short sentence>"}
Use only the intent names listed. Answer "unknown" when none fits. Do not answer the customer's question."""


class LLMClassifier:
    """Asks an API backend for the intent (JSON, temperature 0) when the router abstains."""

    def __init__(self, backend: "Backend", max_tokens: int = 300, system: str = ""):
        self.backend = backend
        self.max_tokens = max_tokens
        # A system prompt with an `{intents}` slot, e.g. the prompt library's "classifier" template.
        self.system = system or CLASSIFIER_SYSTEM

    def classify(self, text: str, routes: Sequence[Route], fallback: RouteChoice) -> RouteChoice:
        """The backend's choice; after malformed JSON twice, or a backend error, `fallback` stands."""
        from common.types import ChatRequest

        by_name = {r.name: r for r in routes}
        listing = "\n".join(f"- {r.name}: {r.description}" for r in routes)
        request = ChatRequest(
            system=self.system.replace("{intents}", listing),
            messages=[{"role": "user", "content": text}],
            temperature=0,
            max_tokens=self.max_tokens,
            json_mode=True,
        )
        for attempt in (1, 2):
            try:
                reply = self.backend.complete(request)
            except BackendError as exc:
                log.warning("intent classification by the backend failed: %s", exc)
                return fallback
            choice = parse_classification(reply, by_name)
            if choice is not None:
                return choice
            log.info("malformed classification (attempt %d): %.200r", attempt, reply)
        return fallback


def parse_classification(reply: str, routes: dict[str, Route]) -> RouteChoice | None:
    """A RouteChoice from the backend's JSON, or None when it is not the promised shape."""
    match = re.search(r"\{.*\}", reply or "", re.DOTALL)  # some models wrap JSON in prose or fences
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
        intent = str(data["intent"]).strip()
        confidence = min(1.0, max(0.0, float(data.get("confidence", 0.0))))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    if intent not in routes and intent != UNKNOWN:
        return None
    scores = [(intent, confidence)] if intent != UNKNOWN else []
    for item in data.get("secondary") or []:
        name, score = (item.get("intent"), item.get("confidence", 0.0)) if isinstance(item, dict) else (item, 0.0)
        try:
            score = min(1.0, max(0.0, float(score)))
        except (TypeError, ValueError):
            score = 0.0
        if name in routes and name not in dict(scores):
            scores.append((str(name), score))
    route = routes.get(intent)
    return RouteChoice(
        intent=intent,
        confidence=confidence,
        scores=sorted(scores, key=lambda s: -s[1])[:TOP_K],
        abstained=intent == UNKNOWN,
        template=route.template if route else DEFAULT_TEMPLATE,
        escalate=bool(route and route.escalate),
        source="llm",
        reasoning=str(data.get("reasoning") or "")[:500],
    )
