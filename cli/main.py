"""Entry point of the command line: parse, run one command, report typed errors as one line."""

from __future__ import annotations

import os
import sys

# No model or dataset is ever fetched at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from cli import build_parser  # noqa: E402
from common.errors import ChatbotError  # noqa: E402
from common.extras import TRAIN_INSTALL, TRAINING_PACKAGES  # noqa: E402
from common.settings import Settings  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run `python -m chatbot ARGV...`; returns the exit status (2 for a reported error)."""
    args = build_parser().parse_args(argv)
    try:
        Settings.load()  # a refused setting stops every command at start, named on one line
        return int(args.func(args) or 0)
    except ChatbotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in (*TRAINING_PACKAGES, "bitsandbytes", "sentence_transformers"):
            raise
        print(f"error: {args.command} needs {exc.name}, which the chat-only install leaves out: run `{TRAIN_INSTALL}`",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
