"""`bench-turn`, `bench-sessions`, `bench-api`, `bench-local-drafts`: the `bench/` benchmarks on the command line."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from bench import api, local_drafts, sessions, turn

    turn.register(subparsers)
    sessions.register(subparsers)
    api.register(subparsers)
    local_drafts.register(subparsers)
