"""Seconds from `streamlit run app.py` to a chat a person can type into, in a real browser; and memory.

Usage: python -m bench.startup [--runs 3] [--python PATH] [--memory] [--json]
The first run seeds a fresh data directory (first start); later runs reuse it (the usual start).
`--python` serves the app with another interpreter, e.g. a virtual environment built from
requirements.txt alone (this one still drives the browser). `--memory` also reports the resident
memory of the server after the start, and after one chat turn plus a visit to every page.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from tests.browser import browser_page, running_app

PASSWORD = "bench-admin"
PAGES = ("History", "Knowledge base", "Stats", "Prompts", "Training")
ADMIN_PAGES = ("Prompts", "Training")


def _status_kb(pid: int | str, field: str) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split(f"{field}:")[1].split()[0])


def memory_mb(pid: int, data_dir: Path) -> dict:
    """Resident memory of the server (now and its peak) and of the helpers it started in `data_dir`.

    The embedded Redis server runs detached (not a child); it is found by its working directory.
    """
    helpers_kb = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == pid:
            continue
        try:
            if Path(proc.joinpath("cwd").readlink()).is_relative_to(data_dir.resolve()):
                helpers_kb += _status_kb(proc.name, "VmRSS")
        except (OSError, IndexError):
            pass
    return {"rss_mb": round(_status_kb(pid, "VmRSS") / 1024), "peak_mb": round(_status_kb(pid, "VmHWM") / 1024),
            "helpers_mb": round(helpers_kb / 1024)}


def cpu_seconds(pid: int) -> float:
    """CPU time the process has used (user + system): unlike wall time, barely moved by other load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tour(page) -> None:
    """One chat turn, then every page from the sidebar (admin pages unlocked), as one visitor."""
    box = page.get_by_placeholder("Type the customer's message…")
    box.fill("How do I get a refund?")
    box.press("Enter")
    page.locator('[data-testid="stChatMessage"]').filter(has_text="Offline mode").last.wait_for(timeout=120_000)
    page.get_by_text("Sources (").last.wait_for(timeout=60_000)
    for name in PAGES:
        page.locator('[data-testid="stSidebarNav"]').get_by_text(name, exact=True).click()
        if name in ADMIN_PAGES:
            field = page.get_by_label("Admin password")
            if field.count():
                field.fill(PASSWORD)
                page.get_by_role("button", name="Unlock").click()
        page.get_by_role("heading").first.wait_for(timeout=120_000)
        page.wait_for_timeout(1500)  # the page's own work (charts, tables) after its first element
        page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=120_000)


def time_to_chat(data_dir: Path, python: str | None = None, memory: bool = False) -> dict:
    processes: list = []
    started = time.perf_counter()
    env = {"CHATBOT_BACKEND": "offline", "CHATBOT_ADMIN_PASSWORD": PASSWORD}
    with running_app(data_dir, env=env, python=python, processes=processes, timeout=300) as url, \
            browser_page() as page:
        page.goto(url, wait_until="domcontentloaded")
        page.get_by_placeholder("Type the customer's message…").wait_for(timeout=300_000)
        result: dict = {"seconds": time.perf_counter() - started, "cpu_s": cpu_seconds(processes[0].pid)}
        if memory:
            result["after_start"] = memory_mb(processes[0].pid, data_dir)
            tour(page)
            result["after_tour"] = memory_mb(processes[0].pid, data_dir)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--python", default=None, help="the interpreter that serves the app (default: this one)")
    parser.add_argument("--memory", action="store_true", help="also measure resident memory")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        first = time_to_chat(Path(tmp), args.python, args.memory)
        warm = [time_to_chat(Path(tmp), args.python, args.memory) for _ in range(args.runs)]
    times = [w["seconds"] for w in warm]
    result = {"first_start_s": round(first["seconds"], 2), "start_p50_s": round(statistics.median(times), 2),
              "start_max_s": round(max(times), 2), "runs": args.runs, "first_start_cpu_s": round(first["cpu_s"], 2),
              "start_cpu_p50_s": round(statistics.median(w["cpu_s"] for w in warm), 2),
              "load_average": round(os.getloadavg()[0], 1)}
    if args.memory:
        result["first_start_memory"] = {k: v for k, v in first.items() if k not in ("seconds", "cpu_s")}
        result["later_start_memory"] = [{k: v for k, v in w.items() if k not in ("seconds", "cpu_s")} for w in warm]
    print(json.dumps(result) if args.json else
          f"first start {first['seconds']:.1f} s; later starts median {result['start_p50_s']} s, "
          f"max {result['start_max_s']} s" + (f"\n{json.dumps(result, indent=1)}" if args.memory else ""))


if __name__ == "__main__":
    main()
