"""Prometheus metrics of the API (prometheus-client), one registry per app so tests do not share counts.

Names follow Prometheus' conventions: base units (seconds), `_total` counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from chatbot.store.messages import INTERRUPTED_TEXT

# Seconds; a turn on the offline backend takes tens of milliseconds, one on an API model seconds.
TURN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """Turns, latencies, time to first token, tokens, fallbacks and errors by kind."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Histogram("chatbot_api_request_seconds", "API request latency by route and status",
                                  ["route", "method", "status"], buckets=REQUEST_BUCKETS, registry=r)
        self.turns = Counter("chatbot_turns_total", "Turns run through the API, by endpoint, backend and outcome",
                             ["endpoint", "backend", "outcome"], registry=r)
        self.turn_latency = Histogram("chatbot_turn_seconds", "Whole turn, message to last token",
                                      ["endpoint", "backend"], buckets=TURN_BUCKETS, registry=r)
        self.ttft = Histogram("chatbot_time_to_first_token_seconds", "Message received to first reply token",
                              ["endpoint", "backend"], buckets=TURN_BUCKETS, registry=r)
        self.tokens = Counter("chatbot_tokens_total", "Tokens reported by the backends", ["backend", "direction"],
                              registry=r)
        self.fallbacks = Counter("chatbot_fallbacks_total", "Turns answered by the offline backend instead",
                                 ["reason"], registry=r)
        self.errors = Counter("chatbot_api_errors_total", "Errors answered, by type", ["kind"], registry=r)

    def observe_turn(self, endpoint: str, meta) -> None:
        """Count one finished turn from its TurnMeta: outcome "interrupted" when its client went away."""
        backend = meta.backend or "unknown"
        if meta.error:
            outcome = "interrupted" if meta.error == INTERRUPTED_TEXT else "failed"
        else:
            outcome = meta.outcome or ("handoff" if backend == "handoff" else "none")
        self.turns.labels(endpoint, backend, outcome).inc()
        self.turn_latency.labels(endpoint, backend).observe(meta.latency_ms / 1000)
        if meta.ttft_ms:
            self.ttft.labels(endpoint, backend).observe(meta.ttft_ms / 1000)
        if meta.input_tokens:
            self.tokens.labels(backend, "input").inc(meta.input_tokens)
        if meta.output_tokens:
            self.tokens.labels(backend, "output").inc(meta.output_tokens)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
