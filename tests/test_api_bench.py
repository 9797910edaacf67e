"""`bench-api` on a small run: both servers start, and every measure it records is there and sane."""

from __future__ import annotations

from bench.api import measure


def test_a_small_run_measures_what_the_api_adds(tmp_path):
    result = measure(tmp_path, 12)
    for name in ("inprocess_turn", "api_turn", "api_classify", "bare_post", "api_first_sse_byte",
                 "turn_outside_core", "classify_outside_core", "turn_overhead"):
        assert result[f"{name}_p95_ms"] >= result[f"{name}_p50_ms"], name
    # What the API adds to a request is part of its round trip, and the core's time is the rest.
    for name in ("turn", "classify"):
        assert 0 < result[f"{name}_outside_core_p50_ms"] < result[f"{name}_round_trip_p50_ms"], name
    assert result["api_classify_rps_10"] > 0 and 0 < result["rps_ratio_1"]
