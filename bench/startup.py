"""Seconds from `streamlit run app.py` to a chat a person can type into, in a real browser.

Usage: python -m bench.startup [--runs 3] [--json]
The first run seeds a fresh data directory (first start); later runs reuse it (the usual start).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from tests.browser import browser_page, running_app


def time_to_chat(data_dir: Path) -> float:
    started = time.perf_counter()
    with running_app(data_dir, env={"CHATBOT_BACKEND": "offline"}) as url, browser_page() as page:
        page.goto(url, wait_until="domcontentloaded")
        page.get_by_placeholder("Type the customer's message…").wait_for(timeout=180_000)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        first = time_to_chat(Path(tmp))
        warm = [time_to_chat(Path(tmp)) for _ in range(args.runs)]
    result = {"first_start_s": round(first, 2), "start_p50_s": round(statistics.median(warm), 2),
              "start_max_s": round(max(warm), 2), "runs": args.runs}
    print(json.dumps(result) if args.json else
          f"first start {first:.1f} s; later starts median {result['start_p50_s']} s, max {result['start_max_s']} s")


if __name__ == "__main__":
    main()
