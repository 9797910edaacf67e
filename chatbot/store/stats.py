"""Numbers about a conversation, computed from its stored messages."""

from __future__ import annotations

from statistics import mean

from chatbot.store.analytics import count_turns


def conversation_stats(messages: list[dict]) -> dict:
    """Turns, retrievals, tokens, latency and time to first token of one conversation."""
    metas = [m["meta"] for m in messages if m.get("role") == "assistant" and m.get("meta")]
    turns, failed = count_turns(messages)  # the same count as History's and the Stats page's
    latencies = [m["latency_ms"] for m in metas if m.get("latency_ms") is not None]
    ttfts = [m["ttft_ms"] for m in metas if m.get("ttft_ms")]
    last = metas[-1] if metas else {}
    return {
        "turns": turns,
        "failed_turns": failed,
        "retrievals": sum(1 for m in metas if m.get("retrieved")),
        "passages_cited": sum(len(m.get("citations", [])) for m in metas),
        "tokens_in": sum(m.get("input_tokens", 0) for m in metas),
        "tokens_out": sum(m.get("output_tokens", 0) for m in metas),
        "last_latency_ms": latencies[-1] if latencies else None,
        "mean_latency_ms": mean(latencies) if latencies else None,
        "last_ttft_ms": ttfts[-1] if ttfts else None,
        "mean_ttft_ms": mean(ttfts) if ttfts else None,
        "backend": last.get("backend", ""),
        "model": last.get("model", ""),
    }
