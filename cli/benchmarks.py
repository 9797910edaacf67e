"""`bench-turn`, `bench-sessions` and `bench-local-drafts`: the benchmarks of `bench/`, run from the command line."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from bench import local_drafts, sessions, turn

    turn.register(subparsers)
    sessions.register(subparsers)
    local_drafts.register(subparsers)
