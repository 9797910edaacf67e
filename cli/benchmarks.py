"""`bench-turn` and `bench-sessions`: the benchmarks of `bench/`, run from the command line."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from bench import sessions, turn

    turn.register(subparsers)
    sessions.register(subparsers)
