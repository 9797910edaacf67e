"""`python -m chatbot serve` (what `make api` runs): a real process serving the API over the app's
data directory, with a key made by the command line, answering /health, /docs and a turn."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_serve_answers_health_docs_and_a_turn_with_a_key_from_the_command_line(tmp_path):
    env = {**os.environ, "CHATBOT_DATA_DIR": str(tmp_path), "CHATBOT_BACKEND": "offline"}
    key = subprocess.run([sys.executable, "-m", "chatbot", "api-keys", "create", "curl"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "chatbot", "serve", "--port", str(port), "--log-level", "warning"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
