"""Turns through store faults: how many survived, and how many customer messages were lost.

Usage: python -m bench.store_faults [--turns 10] [--json]

The conversation store is a real redis-server made to answer each fault for real, either when
the message is sent or half-way through the reply: killed (the connection is lost), writes paused
past the client's timeout (CLIENT PAUSE), out of memory (CONFIG SET maxmemory 1), a read-only
replica (REPLICAOF a master that is not there). The vector store is changed by a second process
(`python -m chatbot ingest`) before each turn of its row.

A turn survives when it ends the way the chat page expects (a reply, or StoreUnavailable and
nothing else) and the message is kept: stored, or handed back to be sent again. A message is
lost when it is in neither place once the fault is over.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import redis

from backends.offline import OfflineBackend
from chatbot.services import build_services
from chatbot.store.server import connect
from chatbot.store.conversations import ConversationStore
from common.errors import StoreUnavailable
from common.settings import Settings
from common.types import ChatRequest, Usage
from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
Heal = Callable[[], object]


def _admin(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port, socket_timeout=10)


def lose_connection(server: RedisServer) -> Heal:
    server.stop(hard=True)
    return server.start


def pause_writes(server: RedisServer) -> Heal:
    _admin(server).execute_command("CLIENT", "PAUSE", 120_000, "WRITE")
    return lambda: _admin(server).execute_command("CLIENT", "UNPAUSE")


def fill_memory(server: RedisServer) -> Heal:
    _admin(server).config_set("maxmemory", 1)
    return lambda: _admin(server).config_set("maxmemory", 0)


def become_replica(server: RedisServer) -> Heal:
    _admin(server).execute_command("REPLICAOF", "127.0.0.1", free_port())
    return lambda: _admin(server).execute_command("REPLICAOF", "NO", "ONE")


FAULTS = {
    "connection lost (server killed)": lose_connection,
    "timeout (CLIENT PAUSE WRITE)": pause_writes,
    "refused write: OOM (maxmemory 1)": fill_memory,
    "read-only replica (READONLY)": become_replica,
}


class FaultMidStream(OfflineBackend):
    """The offline backend, with a store fault injected after its second piece of text."""

    def __init__(self, inject: Callable[[], Heal]):
        super().__init__()
        self.inject, self.heal = inject, None

    def stream(self, request: ChatRequest) -> Iterator[str | Usage]:
        for number, piece in enumerate(super().stream(request)):
            if number == 2 and self.heal is None:
                self.heal = self.inject()
            yield piece


def one_turn(services, backend, session: str, text: str, inject: Callable[[], Heal] | None) -> tuple[bool, bool]:
    """(survived, kept) for one turn with a fault at send (`inject`) or inside `backend`'s stream."""
    heal = inject() if inject else None
    handed_back = ""
    try:
        services.build_chatbot(backend).ask(session, text)
        clean = True
    except StoreUnavailable:
        handed_back, clean = text, True  # the page keeps it as a draft with a resend button
    except Exception:  # noqa: BLE001 - anything else is a traceback on the page
        clean = False
    finally:
        (heal or getattr(backend, "heal", None) or (lambda: None))()
    stored = [m.content for m in services.store.messages(session)]
    kept = text in stored or handed_back == text
    return clean and kept, kept


def run(turns: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="store-faults-") as tmp, RedisServer(Path(tmp) / "redis") as server:
        os.environ["CHATBOT_DATA_DIR"] = str(Path(tmp) / "data")
        settings = Settings.load()
        services = build_services(settings)
        services.store = ConversationStore(connect(f"{server.url}?socket_timeout=0.5"))
        for name, inject in FAULTS.items():
            for phase in ("at send", "mid-reply"):
                survived = lost = 0
                for n in range(turns):
                    text = f"My thermostat shows error E{n} ({name}, {phase})"
                    backend = FaultMidStream(lambda: inject(server)) if phase == "mid-reply" else OfflineBackend()
                    ok, kept = one_turn(services, backend, f"{phase}-{name}", text,
                                        (lambda: inject(server)) if phase == "at send" else None)
                    survived += ok
                    lost += not kept
                rows.append({"fault": f"{name}, {phase}", "tried": turns, "survived": survived, "lost": lost})
        # The vector store changed by another process before each turn.
        survived = lost = 0
        for n in range(turns):
            article = Path(tmp) / f"heat-pump-{n}.md"
            article.write_text(f"# Heat pump error H{n}\n\nError H{n} means the outdoor coil is defrosting.\n")
            subprocess.run([sys.executable, "-m", "chatbot", "ingest", str(article)], cwd=ROOT, check=True,
                           capture_output=True, env={**os.environ})
            text = f"My heat pump shows error H{n}, what does it mean?"
            ok, kept = one_turn(services, OfflineBackend(), "vectors", text, None)
            survived += ok
            lost += not kept
        rows.append({"fault": "vector store changed by another process (ingest)", "tried": turns,
                     "survived": survived, "lost": lost})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10, help="turns per fault (default 10)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    rows = run(args.turns)
    if args.json:
        print(json.dumps(rows))
        return
    print("| fault | tried | survived | messages lost |\n| --- | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['fault']} | {row['tried']} | {row['survived']} | {row['lost']} |")


if __name__ == "__main__":
    main()
