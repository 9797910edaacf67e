"""`bench-turn`, `bench-sessions` and `bench-ingest-memory`: the benchmarks of `bench/`, from the command line."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from bench import ingest_memory, sessions, turn

    turn.register(subparsers)
    sessions.register(subparsers)
    ingest_memory.register(subparsers)
