"""`python -m chatbot COMMAND ...`: the command line (package `cli`), kept under the product's name."""

from __future__ import annotations

import sys

from cli.main import main

if __name__ == "__main__":
    sys.exit(main())
