"""Start the real app with `streamlit run` and drive it with Debian's Chromium through Playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
# Without these flags Chromium keeps trying to reach Google's hosts, which this network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(data_dir: Path, env: dict | None = None, timeout: float = 120, python: str | None = None,
                processes: list | None = None):
    """`streamlit run app.py` on a free port; yields its base URL once it serves.

    `python` runs it (default: this interpreter; another virtual environment's, to try an install
    profile); `processes`, when given, receives the server's Popen.
    """
    port = free_port()
    log = open(data_dir / "streamlit.log", "w")
    proc = subprocess.Popen(
        [python or sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "CHATBOT_DATA_DIR": str(data_dir), **(env or {})},
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    if processes is not None:
        processes.append(proc)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("streamlit did not start:\n" + (data_dir / "streamlit.log").read_text())
                time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)
        log.close()


@contextmanager
def chromium():
    """Headless Debian Chromium through Playwright: a Browser, for tests that need several contexts."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def browser_page():
    """A Playwright page in headless Debian Chromium."""
    with chromium() as browser:
        yield browser.new_page(viewport={"width": 1280, "height": 900})
