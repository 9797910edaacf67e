"""The Chatwoot acknowledgement benchmark runs end to end and reports its figures (a few deliveries)."""

from __future__ import annotations

from bench.chatwoot_ack import measure


def test_the_benchmark_measures_the_endpoint_against_a_bare_one(tmp_path):
    result = measure(5, tmp_path)
    assert result["requests"] == 5
    for name in ("ack_ms", "bare_ms", "emit_ms"):
        assert 0 < result[name]["p50"] <= result[name]["p95"]
    assert result["ratio_p50"] > 0
