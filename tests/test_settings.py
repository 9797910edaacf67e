"""Settings are checked at start: a refused value names the setting and what it accepts, the same
way in the app (a page that says so) and on the command line (one line, exit status 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from backends.registry import BACKENDS
from common.errors import ConfigurationError, SettingsRefused
from common.settings import BACKEND_NAMES, FUSIONS, Settings
from knowledge.fusion import FUSIONS as KNOWLEDGE_FUSIONS
from tests.conftest import app_environment

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120  # the run after the fix loads the embedding model and seeds the demo knowledge base


def refused(**secrets) -> SettingsRefused:
    with pytest.raises(SettingsRefused) as caught:
        Settings.load(secrets=secrets)
    return caught.value


def test_a_backend_or_fusion_by_name_must_be_one_the_app_has():
    assert BACKEND_NAMES == BACKENDS and FUSIONS == KNOWLEDGE_FUSIONS
    assert str(refused(CHATBOT_BACKEND="gpt5")) == (
        "CHATBOT_BACKEND is 'gpt5': choose one of offline, openai, anthropic, ollama, local")
    assert str(refused(CHATBOT_FUSION="weighted")) == "CHATBOT_FUSION is 'weighted': choose one of convex, rrf"
    assert Settings.load(secrets={"backend": "anthropic", "retrieval_fusion": "rrf"}).backend == "anthropic"


@pytest.mark.parametrize("name, value, says", [
    ("CHATBOT_DAILY_TOKEN_LIMIT", "-5", "CHATBOT_DAILY_TOKEN_LIMIT is '-5': it must be 0 or more (0 turns it off)"),
    ("CHATBOT_REQUESTS_PER_MINUTE", "twenty", "CHATBOT_REQUESTS_PER_MINUTE is 'twenty': it must be a whole number"),
    ("CHATBOT_DAILY_COST_LIMIT", "lots", "CHATBOT_DAILY_COST_LIMIT is 'lots': it must be a number"),
    ("CHATBOT_CONVERSATION_TOKEN_LIMIT", -1, "CHATBOT_CONVERSATION_TOKEN_LIMIT is -1: it must be 0 or more"),
    ("CHATBOT_TOP_K", "0", "CHATBOT_TOP_K is '0': it must be 1 or more"),
    ("CHATBOT_MAX_TOKENS", "2.5", "CHATBOT_MAX_TOKENS is '2.5': it must be a whole number"),
    ("CHATBOT_REQUEST_TIMEOUT", "0", "CHATBOT_REQUEST_TIMEOUT is '0': it must be more than 0"),
    ("CHROMA_PORT", "70000", "CHROMA_PORT is '70000': it must be 65535 or less"),
    ("CHATBOT_API_PORT", "99999", "CHATBOT_API_PORT is '99999': it must be 65535 or less"),
    ("CHATBOT_API_PORT", "abc", "CHATBOT_API_PORT is 'abc': it must be a whole number"),
    ("CHATBOT_API_HOST", "", "CHATBOT_API_HOST is '': it must not be empty"),
])
def test_a_limit_or_number_out_of_range_is_refused_by_name(name, value, says):
    assert str(refused(**{name: value})).startswith(says)


def test_every_refused_setting_is_named_at_once_and_secrets_are_not_shown():
    error = refused(CHATBOT_BACKEND="gpt5", CHATBOT_TOP_K="many", REDIS_URL=["not", "a", "url"])
    assert [p.split(" ", 1)[0] for p in error.problems] == ["CHATBOT_BACKEND", "CHATBOT_TOP_K", "REDIS_URL"]
    assert "not" not in str(error) and "REDIS_URL is ***" in str(error)
    assert isinstance(error, ConfigurationError)


def test_good_values_of_each_kind_are_read_from_text(monkeypatch):
    monkeypatch.setenv("CHATBOT_TEMPERATURE", "0.2")
    monkeypatch.setenv("CHATBOT_DAILY_COST_LIMIT", "0")
    monkeypatch.setenv("CHATBOT_DATA_DIR", "/tmp/desk")
    settings = Settings.load(secrets={"CHATBOT_MAX_TOKENS": "300", "admin_emails": ["ana@example.com"],
                                      "model_prices": {"gpt-4o-mini": [0.15, 0.6]}})
    assert (settings.temperature, settings.max_tokens, settings.daily_cost_limit) == (0.2, 300, 0.0)
    assert settings.data_dir == Path("/tmp/desk") and settings.admin_emails == ["ana@example.com"]
    assert settings.model_prices == {"gpt-4o-mini": [0.15, 0.6]} and settings.max_message_chars == 4000
    assert Settings.load(secrets={"CHROMA_TOKEN": 12345}).chroma_token == "12345"  # digits in secrets.toml


def test_secrets_come_before_the_environment_and_explicit_values_before_both(monkeypatch):
    monkeypatch.setenv("CHATBOT_BACKEND", "gpt5")  # refused, unless something earlier sets the backend
    assert Settings.load(secrets={"backend": "ollama"}).backend == "ollama"
    assert Settings.load(secrets={"CHATBOT_BACKEND": "ollama"}, backend="openai").backend == "openai"
    with pytest.raises(SettingsRefused, match="CHATBOT_BACKEND is 'gpt5'"):
        Settings.load(secrets={})


def test_the_command_line_refuses_a_bad_setting_at_start_in_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CHATBOT_DATA_DIR": str(tmp_path / "data"),
           "CHATBOT_FUSION": "weighted"}
    result = subprocess.run([sys.executable, "-m", "chatbot", "search", "refund"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr == "error: CHATBOT_FUSION is 'weighted': choose one of convex, rrf\n"
    assert not (tmp_path / "data").exists(), "nothing ran before the settings were checked"


def test_the_app_refuses_a_bad_setting_with_a_page_that_names_it(tmp_path):
    with app_environment(tmp_path, CHATBOT_BACKEND="gpt5", CHATBOT_DAILY_TOKEN_LIMIT="-1"):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
        assert not at.exception
        [error] = at.error
        assert "The app cannot start" in error.value
        assert "CHATBOT_BACKEND is 'gpt5': choose one of offline, openai, anthropic, ollama, local" in error.value
        assert "CHATBOT_DAILY_TOKEN_LIMIT is '-1': it must be 0 or more" in error.value
        assert not at.title, "no page renders behind the error"
        # A setting from the app's secrets is refused the same way, and wins over the environment.
        at.secrets["CHATBOT_BACKEND"] = "offline"
        at.secrets["CHATBOT_FUSION"] = "weighted"
        at.run()
        assert "CHATBOT_FUSION is 'weighted'" in at.error[0].value and "CHATBOT_BACKEND" not in at.error[0].value
        # Fixed, the next run starts the app: nothing refused was cached.
        at.secrets["CHATBOT_FUSION"] = "rrf"
        at.secrets["CHATBOT_DAILY_TOKEN_LIMIT"] = "0"
        at.run()
        assert not at.exception and not at.error and at.title[0].value == "Support chat"
