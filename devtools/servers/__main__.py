"""Serve one protocol in the foreground from the command line."""

from __future__ import annotations

import sys
import threading

from devtools.servers.anthropic import AnthropicServer
from devtools.servers.ollama import OllamaServer
from devtools.servers.openai import OpenAIServer

SERVERS = {"openai": OpenAIServer, "anthropic": AnthropicServer, "ollama": OllamaServer}


def main(argv: list[str] | None = None) -> None:
    """Serve one protocol in the foreground: python -m devtools.servers openai|anthropic|ollama [PORT]."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in SERVERS:
        raise SystemExit(main.__doc__)
    with SERVERS[args[0]](port=int(args[1]) if len(args) > 1 else 0) as server:
        print(f"{args[0]} protocol server at {server.base_url} (Ctrl-C stops it)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
