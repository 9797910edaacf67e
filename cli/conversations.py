"""`conversations list|show|export|delete`: the stored conversations, without a browser."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from common.settings import Settings
from common.timezones import DisplayZone, machine_zone, named_zone

if TYPE_CHECKING:  # the chat core is imported by the commands that use it
    from chatbot.store.conversations import ConversationStore


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("conversations", help="list, show, export or delete stored conversations")
    commands = parser.add_subparsers(dest="conversations_command", required=True, metavar="ACTION")

    listing = commands.add_parser("list", help="conversations, most recent first")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--search", default="", help="only those whose messages contain this text")
    listing.add_argument("--intent", default="", help="only those with a turn routed to this intent")
    listing.add_argument("--escalated", action="store_true", help="only escalated conversations")
    listing.add_argument("--agent", default="", help="only those this agent wrote to")
    listing.add_argument("--json", action="store_true", help="print one JSON array")
    listing.set_defaults(func=run_list)

    show = commands.add_parser("show", help="a conversation's messages with their metadata")
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="print the whole conversation as JSON")
    show.set_defaults(func=run_show)

    export = commands.add_parser("export", help="a conversation as Markdown, JSON or CSV (one row per message)")
    export.add_argument("id")
    export.add_argument("--format", choices=("md", "json", "csv"), default="md")
    export.add_argument("--timezone", type=_named, default=None, metavar="NAME",
                        help="show times in this IANA zone, e.g. Europe/Berlin (default: this machine's, else UTC)")
    export.add_argument("--output", "-o", type=Path, help="write to this file instead of stdout")
    export.set_defaults(func=run_export)

    delete = commands.add_parser("delete", help="delete a conversation for good")
    delete.add_argument("id")
    delete.set_defaults(func=run_delete)


def open_store() -> "ConversationStore":
    """The configured store, without loading the embedding model or the knowledge base."""
    from chatbot.store.conversations import ConversationStore

    return ConversationStore.from_settings(Settings.load())


def _named(name: str) -> DisplayZone:
    zone = named_zone(name)
    if zone is None:
        raise argparse.ArgumentTypeError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or UTC")
    return zone


def _when(ts: float, zone: DisplayZone) -> str:
    return zone.format(ts, empty="-")


def run_list(args: argparse.Namespace) -> int:
    store = open_store()
    found = store.search(text=args.search, intent=args.intent, escalated=True if args.escalated else None,
                         agent=args.agent, limit=args.limit)
    if args.json:
        print(json.dumps([s.to_dict() for s in found], ensure_ascii=False))
        return 0
    if not found:
        print("no conversations")
        return 0
    zone = machine_zone()
    active = f"last active ({zone.label})"
    width = max(18, len(active) + 2)
    print(f"{'id':<18}{active:<{width}}{'turns':>6}  {'intent':<18}{'esc':<5}title")
    for s in found:
        intent = s.last_intent or "-"
        print(f"{s.id:<18}{_when(s.updated, zone):<{width}}{s.turns:>6}  {intent[:17]:<18}"
              f"{'yes' if s.escalated else '':<5}{s.title[:60]}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from chatbot.store import analytics

    conversation = open_store().conversation(args.id)
    if args.json:
        print(analytics.to_json(conversation))
        return 0
    sys.stdout.write(analytics.to_markdown(conversation, machine_zone()))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from chatbot.store import analytics, csv_export

    zone = args.timezone or machine_zone()
    conversation = open_store().conversation(args.id)
    if args.format == "json":
        text = analytics.to_json(conversation) + "\n"
    elif args.format == "csv":
        text = csv_export.conversation_csv(conversation, zone)
    else:
        text = analytics.to_markdown(conversation, zone)
    if args.output:
        # newline="": the CSV's own CRLF line ends are written as they are (RFC 4180).
        with args.output.open("w", encoding="utf-8", newline="") as out:
            out.write(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def run_delete(args: argparse.Namespace) -> int:
    if not open_store().delete(args.id):
        print(f"error: no conversation {args.id}", file=sys.stderr)
        return 2
    print(f"deleted {args.id}")
    return 0
