"""`serve`: the HTTP API (FastAPI on uvicorn), over the same data directory, Redis and Chroma as the app."""

from __future__ import annotations

import argparse
import os

from backends.registry import BACKENDS


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="serve the HTTP API (docs at /docs)")
    serve.add_argument("--host", default=os.environ.get("CHATBOT_API_HOST", "127.0.0.1"),
                       help="address to listen on (default CHATBOT_API_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=int(os.environ.get("CHATBOT_API_PORT", "8000")),
                       help="port (default CHATBOT_API_PORT or 8000)")
    serve.add_argument("--backend", choices=BACKENDS, help="LLM backend (default: CHATBOT_BACKEND or offline)")
    serve.add_argument("--model", help="model name for the backend")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from api.server import serve  # the API's packages load only for this command

    serve(args.host, args.port, backend=args.backend or "", model=args.model or "", log_level=args.log_level)
    return 0
