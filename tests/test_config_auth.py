"""Settings precedence and secrecy; the admin password, its throttle and sign-in tokens."""

from __future__ import annotations

import time

import pytest

from chatbot.access.auth import AdminAuth, Attempt
from chatbot.access.tokens import SessionTokens, load_or_create_key
from chatbot.access.throttle import SignInThrottle, Wait
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
    with pytest.raises(ConfigurationError, match="CHATBOT_TOP_K is .many.: it must be a whole number"):
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


def test_wrong_passwords_slow_that_client_down_exponentially_and_not_the_others(tmp_path, redis_client):
    now = [1000.0]
    throttle = SignInThrottle(lambda: redis_client, free_attempts=3, base_delay=2, max_delay=60, clock=lambda: now[0])
    auth = AdminAuth(tmp_path, configured_password="right", throttle=throttle)
    for _ in range(2):
        assert auth.attempt("wrong", client="guesser") == Attempt(False)  # free tries: no wait yet
    waits = []
    for _ in range(5):
        attempt = auth.attempt("wrong", client="guesser")
        assert not attempt.ok and attempt.scope == "client"
        waits.append(attempt.wait)
        # While it waits, even the right password is not checked.
        assert auth.attempt("right", client="guesser") == Attempt(False, attempt.wait, "client")
        now[0] += attempt.wait
    assert waits == [2, 4, 8, 16, 32]
    assert auth.attempt("wrong", client="guesser").wait == 60  # the ceiling
    assert auth.locked_for("guesser") == 60
    # Another browser session is not slowed by someone else's guesses.
    assert auth.locked_for("admin-elsewhere") == 0 and auth.check("right", client="admin-elsewhere")
    # A second server process on the same Redis sees the same delay.
    other = AdminAuth(tmp_path, configured_password="right", throttle=SignInThrottle(
        lambda: redis_client, free_attempts=3, base_delay=2, max_delay=60, clock=lambda: now[0]))
    assert other.locked_for("guesser") == 60
    now[0] += 60
    assert auth.check("right", client="guesser")
    assert throttle.failures("guesser") == 0  # the right password starts the count afresh


def test_a_global_cap_bounds_guessing_from_many_sessions(tmp_path, redis_client):
    throttle = SignInThrottle(lambda: redis_client, free_attempts=3, global_failures=4, global_window=2)
    auth = AdminAuth(tmp_path, configured_password="right", throttle=throttle)
    for session in range(4):  # a guesser opening a new session for every try
        assert not auth.check("wrong", client=f"session-{session}")
    attempt = auth.attempt("right", client="fresh-session")
    assert not attempt.ok and attempt.scope == "everyone" and 0 < attempt.wait <= 2
    time.sleep(attempt.wait + 0.1)  # a moving window: it opens again by itself
    assert auth.check("right", client="fresh-session")


def test_a_right_password_after_the_wait_it_was_told_is_checked_while_guessing_goes_on(tmp_path, redis_client):
    throttle = SignInThrottle(lambda: redis_client, free_attempts=3, global_failures=3, global_window=2)
    auth = AdminAuth(tmp_path, configured_password="right", throttle=throttle)
    for session in range(3):  # a guesser fills the window, a new session for every try
        assert not auth.check("wrong", client=f"guesser-{session}")
    told = auth.attempt("right", client="admin")
    assert not told.ok and told.scope == "everyone" and 0 < told.wait <= 2
    assert throttle.wait("admin") == Wait(pytest.approx(told.wait, abs=0.2), "everyone")  # its turn is kept
    time.sleep(told.wait + 0.05)  # the admin waits what it was told
    # The guesser keeps trying the moment the window frees a place: it is queued behind the admin.
    guess = auth.attempt("wrong", client="guesser-3")
    assert not guess.ok and guess.scope == "everyone" and guess.wait > 0
    assert auth.check("right", client="admin")  # checked on its turn, not refused again
    assert throttle.wait("admin") == Wait()


def test_sign_in_tokens_are_signed_expire_and_can_be_revoked(tmp_path, redis_client):
    now = [1_000_000.0]
    key = load_or_create_key(tmp_path)
    assert load_or_create_key(tmp_path) == key and (tmp_path / "session-key").stat().st_mode & 0o777 == 0o600
    tokens = SessionTokens(key, lambda: redis_client, lifetime=3600, clock=lambda: now[0])
    token, sid = tokens.issue("admin", via="password")
    session = tokens.verify(token)
    assert session == {"user": "admin", "via": "password", "sid": sid, "issued": now[0]}
    assert tokens.verify(token[:-2] + ("AA" if not token.endswith("AA") else "BB")) is None  # tampered
    assert SessionTokens(load_or_create_key(tmp_path / "other"), lambda: redis_client, 3600).verify(token) is None
    now[0] += 3601
    assert tokens.verify(token) is None  # expired
    now[0] -= 3601
    assert tokens.is_active(sid) and not tokens.is_active("") and not tokens.is_active("other")
    tokens.revoke(sid)
    assert tokens.verify(token) is None  # signed out
    assert not tokens.is_active(sid)  # every tab holding this sign-in sees it ended


def test_two_servers_starting_at_once_agree_on_one_generated_password(tmp_path, capsys):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        auths = list(pool.map(lambda _: AdminAuth(tmp_path), range(8)))
    printed = [line.strip() for line in capsys.readouterr().err.splitlines() if line.startswith("      ")]
    assert len(printed) == 1  # exactly one server generated and printed it
    assert all(a.check(printed[0]) for a in auths)
    assert not list(tmp_path.glob(".admin-password.*"))  # no temporary file left behind
