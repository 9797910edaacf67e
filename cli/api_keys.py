"""`api-keys create|list|revoke`: the HTTP API's keys, as on the app's API keys page (admins)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from common.settings import Settings

# The key roles of chatbot.access.api_keys.ROLES, named here so that parsing the command line loads no
# core module (ApiKeys.create refuses any other).
ROLES = ("agent", "admin")


def register(subparsers: argparse._SubParsersAction) -> None:
    keys = subparsers.add_parser("api-keys", help="create, list and revoke the HTTP API's keys")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a key; it is printed once, only its hash is kept")
    create.add_argument("name", help="who or what uses it")
    create.add_argument("--role", choices=ROLES, default="agent")
    create.add_argument("--requests-per-minute", type=int, default=60, help="0: no limit (default 60)")
    create.add_argument("--daily-tokens", type=int, default=200_000, help="0: no limit (default 200,000)")
    listing = actions.add_parser("list", help="every key, newest first")
    listing.add_argument("--json", action="store_true")
    revoke = actions.add_parser("revoke", help="refuse a key from now on")
    revoke.add_argument("key_id", help="the 8-character id `list` shows, or the key itself")
    keys.set_defaults(func=run_api_keys)


def run_api_keys(args: argparse.Namespace) -> int:
    from chatbot.access.api_keys import ApiKeys
    from chatbot.store.conversations import ConversationStore

    store = ConversationStore.from_settings(Settings.load())
    keys = ApiKeys(lambda: store.client)
    if args.action == "create":
        record, key = keys.create(args.name, args.role, requests_per_minute=args.requests_per_minute,
                                  daily_tokens=args.daily_tokens)
        print(key)
        print(f"key {record.key_id} ({record.role}) for {record.name}: copy it now, it is not shown again",
              file=sys.stderr)
    elif args.action == "list":
        rows = keys.list()
        if args.json:
            print(json.dumps([r.to_dict() for r in rows]))
        for r in rows if not args.json else []:
            state = "revoked" if r.revoked else "live"
            print(f"{r.key_id}  {r.role:<6} {state:<8} {r.requests_per_minute:>5}/min {r.daily_tokens:>9} tokens/day  "
                  f"{time.strftime('%Y-%m-%d', time.gmtime(r.created))}  {r.name}")
    else:
        already = keys.get(args.key_id).revoked  # ApiKeyError (exit 2) for an unknown id
        record = keys.revoke(args.key_id)
        if already:  # nothing to do: revoking is idempotent, so still exit 0
            print(f"{record.key_id} ({record.name}) was already revoked on "
                  f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(record.revoked))}")
        else:
            print(f"revoked {record.key_id} ({record.name})")
    return 0
