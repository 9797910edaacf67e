"""`serve`: the HTTP API (FastAPI on uvicorn), over the same data directory, Redis and Chroma as the app."""

from __future__ import annotations

import argparse

from backends.registry import BACKENDS
from common.settings import MAX_PORT, MIN_PORT, Settings


def port(text: str) -> int:
    """argparse type: a TCP port (Python's int() alone takes 99999, which the OS swaps for a random port)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: give a whole number") from None
    if not MIN_PORT <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"{value} is not a port: choose {MIN_PORT} to {MAX_PORT}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="serve the HTTP API (docs at /docs)")
    # The defaults are settings (checked at start with the others, a bad one refused by name), not read here.
    serve.add_argument("--host", help="address to listen on (default CHATBOT_API_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=port, help="port (default CHATBOT_API_PORT or 8000)")
    serve.add_argument("--backend", choices=BACKENDS, help="LLM backend (default: CHATBOT_BACKEND or offline)")
    serve.add_argument("--model", help="model name for the backend")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from api.server import serve  # the API's packages load only for this command

    settings = Settings.load()
    serve(args.host or settings.api_host, args.port or settings.api_port, backend=args.backend or "",
          model=args.model or "", log_level=args.log_level)
    return 0
