"""Settings precedence and secrecy; the admin password and its lockout."""

from __future__ import annotations

import pytest

from chatbot.auth import MAX_ATTEMPTS, AdminAuth
from common.settings import Settings
from common.errors import ConfigurationError


def test_explicit_then_secrets_then_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    monkeypatch.setenv("CHATBOT_TOP_K", "7")
    assert Settings.load(secrets={}).openai_api_key == "from-env"
    assert Settings.load(secrets={}).top_k == 7
    assert Settings.load(secrets={"OPENAI_API_KEY": "from-secrets"}).openai_api_key == "from-secrets"
    assert Settings.load(secrets={"openai_api_key": "s"}, openai_api_key="explicit").openai_api_key == "explicit"


def test_missing_key_names_the_setting_and_repr_hides_secrets(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    settings = Settings.load(secrets={"OPENAI_API_KEY": "sk-very-secret"})
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        settings.require("anthropic_api_key")
    assert "sk-very-secret" not in repr(settings)


def test_bad_number_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="CHATBOT_TOP_K must be a int"):
        Settings.load(secrets={"CHATBOT_TOP_K": "many"})


def test_generated_password_is_stored_only_as_a_hash(tmp_path, capsys):
    auth = AdminAuth(tmp_path)
    printed = capsys.readouterr().err
    password = next(line.strip() for line in printed.splitlines() if line.startswith("      "))
    assert auth.generated
    stored = (tmp_path / "admin-password.json").read_text()
    assert password not in stored
    assert auth.check(password)
    # A restart keeps the same password and prints nothing.
    again = AdminAuth(tmp_path)
    assert capsys.readouterr().err == ""
    assert again.check(password) and not again.check("wrong")


def test_five_wrong_attempts_lock_the_form_for_that_client_only(tmp_path):
    now = [1000.0]
    auth = AdminAuth(tmp_path, configured_password="right", clock=lambda: now[0])
    for _ in range(MAX_ATTEMPTS):
        assert not auth.check("wrong", client="10.0.0.9")
    assert auth.locked_for("10.0.0.9") > 0
    assert not auth.check("right", client="10.0.0.9")  # locked, even with the right password
    # Another admin elsewhere is not locked out by someone else's guesses.
    assert auth.locked_for("10.0.0.1") == 0 and auth.check("right", client="10.0.0.1")
    # A second server process on the same data directory sees the same lockout.
    assert AdminAuth(tmp_path, configured_password="right", clock=lambda: now[0]).locked_for("10.0.0.9") > 0
    now[0] += 301
    assert auth.locked_for("10.0.0.9") == 0
    assert auth.check("right", client="10.0.0.9")


def test_two_servers_starting_at_once_agree_on_one_generated_password(tmp_path, capsys):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        auths = list(pool.map(lambda _: AdminAuth(tmp_path), range(8)))
    printed = [line.strip() for line in capsys.readouterr().err.splitlines() if line.startswith("      ")]
    assert len(printed) == 1  # exactly one server generated and printed it
    assert all(a.check(printed[0]) for a in auths)
    assert not list(tmp_path.glob(".admin-password.*"))  # no temporary file left behind
