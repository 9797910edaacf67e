"""`python -m chatbot prompts ...`: list, show, history, diff, rollback, publish and save from a shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main
from chatbot.prompts.library import open_prompt_library, shipped_templates

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path))
    return tmp_path


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["prompts", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_every_template_with_its_production_version(data_dir):
    # A real process, the way an admin without a browser runs it.
    result = subprocess.run([sys.executable, "-m", "chatbot", "prompts", "list"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "CHATBOT_DATA_DIR": str(data_dir)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "PROD", "DRAFT"]
    assert {line.split()[0] for line in lines[1:]} == set(shipped_templates())
    assert all(line.split()[1:3] == ["v1", "v1"] for line in lines[1:])


def test_show_save_diff_publish_and_rollback(data_dir, capsys, tmp_path):
    code, out, err = cli(capsys, "show", "billing")
    assert code == 0 and out == shipped_templates()["billing"]
    assert "billing v1 [draft, production] sha256" in err
    edited = tmp_path / "billing.yaml"
    edited.write_text(out.replace("Calm, precise", "Calm, friendly, precise"))

    code, out, _ = cli(capsys, "save", "billing", str(edited), "--base", "1", "-m", "Friendlier", "--author", "ana")
    assert code == 0 and "saved v2 (draft)" in out
    code, out, _ = cli(capsys, "diff", "billing", "1", "2")
    assert "-    Calm, precise" in out and "+    Calm, friendly, precise" in out
    code, out, _ = cli(capsys, "publish", "billing", "--author", "ana")
    assert code == 0 and out.strip() == "billing: production is now v2 (was v1)."
    code, out, _ = cli(capsys, "history", "billing")
    assert out.splitlines()[0].startswith("v2") and "Friendlier" in out and "[production, draft]" in out

    code, out, _ = cli(capsys, "rollback", "billing", "1", "--author", "ben")
    assert code == 0 and out.strip() == "billing: production is now v1 (was v2)."
    library = open_prompt_library(data_dir)
    assert library.get("billing")[1] == 1
    assert library.store.events("billing")[-1]["author"] == "ben"
    code, out, err = cli(capsys, "show", "billing", "--version", "2")
    assert "Calm, friendly, precise" in out and "billing v2 [draft]" in err


def test_errors_are_clear_and_exit_2(data_dir, capsys, tmp_path):
    code, _, err = cli(capsys, "show", "nosuch")
    assert code == 2 and "No prompt template named 'nosuch'" in err
    code, _, err = cli(capsys, "rollback", "general", "1")
    assert code == 2 and "not earlier than production v1" in err
    code, _, err = cli(capsys, "diff", "general", "1", "4")
    assert code == 2 and "has no version 4" in err
    stale = tmp_path / "general.yaml"
    stale.write_text(shipped_templates()["general"].replace("Warm, concise", "Warm, short"))
    assert cli(capsys, "save", "general", str(stale), "--base", "1", "-m", "first")[0] == 0
    code, _, err = cli(capsys, "save", "general", str(stale), "--base", "1", "-m", "second")
    assert code == 2 and "after you opened v1" in err
    broken = tmp_path / "broken.yaml"
    broken.write_text(shipped_templates()["general"].replace("Warm, concise", "Warm, {adjective}"))
    code, _, err = cli(capsys, "save", "general", str(broken), "--base", "2", "-m", "x")
    assert code == 2 and "error: Line " in err and "unknown variable {adjective}" in err


def test_a_hostile_or_mistyped_file_is_refused_by_name_and_nothing_is_saved(data_dir, capsys, tmp_path):
    laughs = tmp_path / "laughs.yaml"
    laughs.write_text('a: &a ["lol","lol"]\nb: &b [*a,*a,*a]\n')
    code, _, err = cli(capsys, "save", "general", str(laughs), "--base", "1", "-m", "x")
    assert code == 2 and "error: Line 1: a: anchors and aliases ('&a') are not allowed" in err
    mistyped = tmp_path / "general.yaml"
    mistyped.write_text(shipped_templates()["general"].replace("temperature: 0.2", "temperature: 0,2"))
    code, _, err = cli(capsys, "save", "general", str(mistyped), "--base", "1", "-m", "x")
    assert code == 2 and "'model.temperature' must be a number, not '0,2'" in err
    assert open_prompt_library(data_dir).labels("general")["latest"] == 1
