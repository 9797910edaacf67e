"""`bench-local-drafts` reports shares and timings per setting from the replies it recorded."""

from __future__ import annotations

import argparse

from bench.local_drafts import SETTINGS, register, summarise


def row(setting: str, repeated: bool, cited: list[int], seconds: float, chars: int) -> dict:
    return {"setting": setting, "question": "q", "seconds": seconds, "chars": chars, "repeated": repeated,
            "cited": cited, "text": ""}


def test_shares_and_timings_per_setting():
    replies = [row("before", True, [], 70.0, 800), row("before", True, [1], 50.0, 700),
               row("before", False, [], 30.0, 300), row("before", True, [], 60.0, 820),
               row("after", False, [2], 20.0, 300), row("after", False, [], 40.0, 500)]
    result = summarise(replies)
    assert list(result) == ["before", "after"]  # a setting that was not run is left out
    assert result["before"]["repeated_share"] == 0.75 and result["before"]["citing_share"] == 0.25
    assert result["before"]["seconds_p50"] == 55.0 and result["before"]["chars_p50"] == 750
    assert result["after"] == {"replies": 2, "repeated_share": 0.0, "citing_share": 0.5, "seconds_p50": 30.0,
                               "seconds_p95": result["after"]["seconds_p95"], "chars_p50": 400}
    assert 38.0 <= result["after"]["seconds_p95"] <= 40.0


def test_it_is_a_command_of_the_cli_with_every_setting_by_default():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["bench-local-drafts"])
    assert args.settings.split(",") == list(SETTINGS) and args.questions == 8 and args.max_new_tokens == 160
