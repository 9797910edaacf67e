"""`bench-turn`, `bench-sessions`, `bench-api`, `bench-local-drafts`, `bench-ingest-memory`: the `bench/` benchmarks."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from bench import api, ingest_memory, local_drafts, sessions, turn

    turn.register(subparsers)
    sessions.register(subparsers)
    api.register(subparsers)
    local_drafts.register(subparsers)
    ingest_memory.register(subparsers)
