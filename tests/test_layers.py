"""The layering contract (`.importlinter`) holds, and breaks on an upward import; modules stay small."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("views", "ui", "cli", "api", "bench", "chatbot", "training", "knowledge", "backends", "common")
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")
# Tests, and the wire-protocol servers the tests and benchmarks talk to, are not product modules.
MAX_MODULE_LINES = 450


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


def test_no_product_module_is_over_the_size_limit():
    too_long = {}
    for name in (*PACKAGES, "devtools"):
        for path in (ROOT / name).rglob("*.py"):
            count = len(path.read_text().splitlines())
            if count > MAX_MODULE_LINES:
                too_long[str(path.relative_to(ROOT))] = count
    assert too_long == {}, f"split these modules (limit {MAX_MODULE_LINES} lines): {too_long}"
