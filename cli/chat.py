"""`ask`: one turn through the Chatbot, streamed to stdout."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from common.settings import BACKEND_NAMES


def register(subparsers: argparse._SubParsersAction) -> None:
    ask = subparsers.add_parser("ask", help="ask one question and stream the reply")
    ask.add_argument("text", help="the customer's message")
    ask.add_argument("--session", help="continue this conversation id (a new one is made otherwise)")
    ask.add_argument("--backend", choices=BACKEND_NAMES, help="LLM backend (default: CHATBOT_BACKEND or offline)")
    ask.add_argument("--model", help="model name for the backend")
    ask.add_argument("--json", action="store_true", help="print the turn's metadata as JSON after the reply")
    ask.set_defaults(func=run_ask)


def _user() -> str:
    """Whom the command line's requests a minute count: the login name, where there is one."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container with an unnamed user id)
        return "unknown"


def run_ask(args: argparse.Namespace) -> int:
    # The chat core is imported by the command that uses it, not when the command line starts.
    from backends.registry import make_backend
    from chatbot.services import build_services
    from chatbot.store.outcomes import EMPTY, outcome_notice

    services = build_services()
    name = args.backend or services.settings.backend
    session = args.session or services.store.new_id()
    # The same decision as the app's pages: the chosen backend held to the spending limits (counted
    # for this user of the command line), or the offline backend and why.
    answering = services.answering(lambda: make_backend(name, services.settings, args.model),
                                   client_id=f"cli:{_user()}", conversation_id=session)
    if answering.fell_back:
        print(f"note: {name} cannot answer: {answering.reason} The offline backend answers instead.",
              file=sys.stderr)
    bot = services.build_chatbot(answering.backend)
    reply = bot.send(session, args.text)
    if reply is None:
        print("error: the message is empty", file=sys.stderr)
        return 2
    for piece in reply:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    for source in reply.meta.sources:
        print(f"[{source['n']}] {source['title']} ({source['source']})")
    notice = outcome_notice(reply.meta)
    if notice:  # an empty, cut-off or refused reply
        print(notice, file=sys.stderr)
    print(f"session: {session}", file=sys.stderr)
    if args.json:
        print(json.dumps(reply.meta.to_dict(), ensure_ascii=False))
    return 1 if reply.meta.outcome == EMPTY else 0
