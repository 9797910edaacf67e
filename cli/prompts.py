"""`prompts list | show | history | diff | rollback | publish | save`: prompt admin without a browser."""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from common.settings import Settings

if TYPE_CHECKING:  # the chat core is imported by the commands that use it
    from chatbot.prompts.library import PromptLibrary


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("prompts", help="list, show, diff, roll back and publish prompt templates")
    commands = parser.add_subparsers(dest="prompts_command", required=True, metavar="ACTION")

    commands.add_parser("list", help="every template with its production and draft versions")
    show = commands.add_parser("show", help="print a version's YAML (production by default)")
    show.add_argument("name")
    show.add_argument("--version", type=int, help="version number (default: production)")
    history = commands.add_parser("history", help="every version with its author, time and message")
    history.add_argument("name")
    diff = commands.add_parser("diff", help="unified diff between two versions")
    diff.add_argument("name")
    diff.add_argument("v1", type=int)
    diff.add_argument("v2", type=int)
    rollback = commands.add_parser("rollback", help="move production back to an earlier version")
    rollback.add_argument("name")
    rollback.add_argument("version", type=int)
    publish = commands.add_parser("publish", help="make a version (the draft by default) the one the chat uses")
    publish.add_argument("name")
    publish.add_argument("version", type=int, nargs="?")
    save = commands.add_parser("save", help="save a YAML file as a new version (the draft)")
    save.add_argument("name")
    save.add_argument("file", type=Path)
    save.add_argument("--base", type=int, required=True,
                      help="the version your file was edited from (see `prompts list`): a newer save is refused")
    save.add_argument("-m", "--message", required=True, help="what changed and why")
    save.add_argument("--publish", action="store_true", help="also make it the production version")
    for sub in (rollback, publish, save):
        sub.add_argument("--author", default="", help="recorded on the change (default: your login name)")
    parser.set_defaults(func=run)


def _library() -> "PromptLibrary":
    # No embedder: listing and label moves need no model, so the command answers at once.
    from chatbot.prompts.library import open_prompt_library

    return open_prompt_library(Settings.load().data_dir)


def _author(args: argparse.Namespace) -> str:
    return args.author or f"{getpass.getuser()} (cli)"


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def run(args: argparse.Namespace) -> int:
    library = _library()
    action = args.prompts_command
    if action == "list":
        rows = library.overview()
        width = max(len(r["name"]) for r in rows)
        print(f"{'NAME':<{width}}  PROD  DRAFT  VERSIONS  UPDATED           BY")
        for r in rows:
            print(f"{r['name']:<{width}}  v{r['production']:<3}  v{r['draft']:<4}  {r['versions']:<8}  "
                  f"{_when(r['updated_at'])}  {r['updated_by']}")
        return 0
    if action == "show":
        info = library.version(args.name, args.version)
        labels = [k for k, v in library.labels(args.name).items() if v == info.version and k != "latest"]
        # Metadata on stderr: `show NAME > file.yaml` gives an editable file.
        print(f"# {info.name} v{info.version} {('[' + ', '.join(labels) + '] ') if labels else ''}"
              f"sha256 {info.sha256} by {info.author} at {_when(info.created_at)}: {info.message}", file=sys.stderr)
        sys.stdout.write(info.text if info.text.endswith("\n") else info.text + "\n")
        return 0
    if action == "history":
        labels = library.labels(args.name)
        for info in library.history(args.name):
            marks = [k for k in ("production", "draft") if labels.get(k) == info.version]
            print(f"v{info.version:<4} {info.sha256[:12]}  {_when(info.created_at)}  {info.author:<20} "
                  f"{info.message}{'  [' + ', '.join(marks) + ']' if marks else ''}")
        return 0
    if action == "diff":
        text = library.diff(args.name, args.v1, args.v2)
        print(text if text else f"v{args.v1} and v{args.v2} of {args.name} are identical.", end="" if text else "\n")
        return 0
    if action == "rollback":
        previous = library.rollback(args.name, args.version, author=_author(args))
        print(f"{args.name}: production is now v{args.version} (was v{previous}).")
        return 0
    if action == "publish":
        version = args.version or library.labels(args.name).get("draft")
        previous = library.publish(args.name, version, author=_author(args))
        print(f"{args.name}: production is now v{version} (was v{previous}).")
        return 0
    if action == "save":
        text = args.file.read_text(encoding="utf-8")
        info = library.save(args.name, text, author=_author(args), message=args.message, base_version=args.base,
                            publish=args.publish)
        if info.version == args.base:
            print(f"{args.name}: no change, v{info.version} already has this text.")
        else:
            state = "production and draft" if args.publish else "draft"
            print(f"{args.name}: saved v{info.version} ({state}), sha256 {info.sha256}.")
        return 0
    raise AssertionError(action)  # argparse only lets the actions above through
