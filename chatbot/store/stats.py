"""Numbers about a conversation, computed from its stored messages."""

from __future__ import annotations

from statistics import mean

from chatbot.store.messages import Message, TurnMeta, count_turns


def conversation_stats(messages: list[Message]) -> dict:
    """Turns, retrievals, tokens, latency and time to first token of one conversation."""
    metas = [m.meta for m in messages if not m.is_user and m.meta is not None]
    turns, failed = count_turns(messages)  # the same count as History's and the Stats page's
    latencies = [m.latency_ms for m in metas]
    ttfts = [m.ttft_ms for m in metas if m.ttft_ms]
    last = metas[-1] if metas else TurnMeta(created_at=0.0)
    return {
        "turns": turns,
        "failed_turns": failed,
        "retrievals": sum(1 for m in metas if m.retrieved),
        "passages_cited": sum(len(m.citations) for m in metas),
        "tokens_in": sum(m.input_tokens for m in metas),
        "tokens_out": sum(m.output_tokens for m in metas),
        "last_latency_ms": latencies[-1] if latencies else None,
        "mean_latency_ms": mean(latencies) if latencies else None,
        "last_ttft_ms": ttfts[-1] if ttfts else None,
        "mean_ttft_ms": mean(ttfts) if ttfts else None,
        "backend": last.backend,
        "model": last.model,
    }
