"""`bench-turn`, `bench-sessions` and `bench-api`: the benchmarks of `bench/`, run from the command line."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from bench import api, sessions, turn

    turn.register(subparsers)
    sessions.register(subparsers)
    api.register(subparsers)
