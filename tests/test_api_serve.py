"""`python -m chatbot serve` (what `make api` runs): a real process serving the API over the app's
data directory, with a key made by the command line, answering /health, /docs and a turn."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_serve_answers_health_docs_and_a_turn_with_a_key_from_the_command_line(tmp_path):
    env = {**os.environ, "CHATBOT_DATA_DIR": str(tmp_path), "CHATBOT_BACKEND": "offline"}
    key = subprocess.run([sys.executable, "-m", "chatbot", "api-keys", "create", "curl"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    port = free_port()  # from the setting, as `make api` without API_PORT gives it
    server = subprocess.Popen([sys.executable, "-m", "chatbot", "serve", "--log-level", "warning"], cwd=ROOT,
                              env={**env, "CHATBOT_API_PORT": str(port)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):  # a bound so a server that never starts fails the test instead of hanging it
            if server.poll() is not None:
                raise AssertionError(server.stdout.read())
            try:
                health = httpx.get(f"{url}/health")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert health.json()["status"] == "ok"
        assert "swagger" in httpx.get(f"{url}/docs").text.lower()
        assert "/v1/chat/completions" in httpx.get(f"{url}/openapi.json").json()["paths"]
        turn = httpx.post(f"{url}/v1/chat", json={"text": "How do I get a refund?"},
                          headers={"Authorization": f"Bearer {key}"}, timeout=60)
        assert turn.status_code == 200 and turn.json()["citations"]
    finally:
        server.terminate()
        server.wait(30)


@pytest.mark.parametrize("flags, env, says", [
    (["--port", "99999"], {}, "argument --port: 99999 is not a port: choose 1 to 65535"),
    (["--port", "abc"], {}, "argument --port: 'abc' is not a port: give a whole number"),
    ([], {"CHATBOT_API_PORT": "99999"}, "error: CHATBOT_API_PORT is '99999': it must be 65535 or less"),
    ([], {"CHATBOT_API_PORT": "abc"}, "error: CHATBOT_API_PORT is 'abc': it must be a whole number"),
], ids=["flag-past-65535", "flag-word", "setting-past-65535", "setting-word"])
def test_a_port_that_is_not_one_is_refused_by_name_before_anything_serves(tmp_path, flags, env, says):
    done = subprocess.run([sys.executable, "-m", "chatbot", "serve", *flags], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "CHATBOT_DATA_DIR": str(tmp_path / "data"), **env})
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].endswith(says)
    if env:  # a setting, as every other one: its one line alone (a flag gets argparse's usage above it)
        assert done.stderr == says + "\n"
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "data").exists(), "nothing ran before the port was checked"
