"""API keys: made, checked and revoked in the real embedded Redis; by admins on the API keys page
(AppTest) and by the command line; shown once, stored as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from chatbot.access.api_keys import ApiKeyError, ApiKeys, KeyLimitReached
from tests.conftest import app_environment

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180


@pytest.fixture
def keys(tmp_path):
    from chatbot.store.conversations import ConversationStore
    from common.settings import Settings

    store = ConversationStore.from_settings(Settings.load(secrets={}, data_dir=tmp_path))
    return ApiKeys(lambda: store.client), store


def test_a_key_is_kept_as_its_hash_and_checked_against_it(keys):
    api_keys, store = keys
    record, key = api_keys.create("crm", "admin", requests_per_minute=5, daily_tokens=100)
    stored = {k.decode(): v.decode() for k, v in store.client.hgetall(f"chatbot:apikey:{record.key_id}").items()}
    assert stored["hash"] == hashlib.sha256(key.encode()).hexdigest() and key not in stored.values()
    assert api_keys.verify(key) == record and api_keys.verify(key + "x") is None
    assert api_keys.verify(key.replace(record.key_id, "00000000")) is None
    assert api_keys.revoke(record.key_id).revoked and api_keys.verify(key) is None
    assert [k.key_id for k in api_keys.list()] == [record.key_id]
    with pytest.raises(ApiKeyError, match="role"):
        api_keys.create("x", "owner")
    with pytest.raises(ApiKeyError, match="Name"):
        api_keys.create("  ")


def test_each_key_has_its_own_limits(keys):
    api_keys, _ = keys
    tight, tight_key = api_keys.create("tight", requests_per_minute=1, daily_tokens=10)
    other, _ = api_keys.create("other", requests_per_minute=1)
    api_keys.admit(tight)
    with pytest.raises(KeyLimitReached) as over:
        api_keys.admit(tight)
    assert over.value.limit == "requests" and 0 < over.value.retry_after <= 60
    api_keys.admit(other)  # another key's minute is its own
    api_keys.settle_tokens(tight, "", 12)
    assert api_keys.tokens_today(tight) == 12
    with pytest.raises(KeyLimitReached, match="tokens for today"):
        api_keys.check_tokens(api_keys.verify(tight_key))  # as each request reads the key
    api_keys.check_tokens(other)


def test_the_command_line_creates_lists_and_revokes(tmp_path, capsys, monkeypatch):
    from cli.main import main

    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path))
    assert main(["api-keys", "create", "zendesk", "--role", "admin", "--requests-per-minute", "30"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("desk_")
    assert main(["api-keys", "list"]) == 0
    listing = capsys.readouterr().out
    key_id = key.split("_")[1]
    assert key_id in listing and "admin" in listing and "zendesk" in listing and key not in listing
    assert main(["api-keys", "revoke", key_id]) == 0 and main(["api-keys", "list"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["api-keys", "revoke", "ffffffff"]) == 2
    assert capsys.readouterr().err == "error: No API key ffffffff.\n"


def test_revoking_a_revoked_key_says_so_and_keeps_when_it_was_revoked(tmp_path, capsys, monkeypatch):
    from cli.main import main

    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path))
    assert main(["api-keys", "create", "old laptop"]) == 0
    key_id = capsys.readouterr().out.strip().split("_")[1]
    assert main(["api-keys", "revoke", key_id]) == 0
    assert capsys.readouterr().out == f"revoked {key_id} (old laptop)\n"
    assert main(["api-keys", "list", "--json"]) == 0
    [first] = json.loads(capsys.readouterr().out)
    assert main(["api-keys", "revoke", key_id]) == 0  # idempotent: nothing failed
    said = capsys.readouterr().out
    assert said.startswith(f"{key_id} (old laptop) was already revoked on ") and not said.startswith("revoked")
    assert main(["api-keys", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["revoked"] == first["revoked"]  # when it was revoked first


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    with app_environment(tmp_path_factory.mktemp("api-keys-app"), CHATBOT_ADMIN_PASSWORD="pw") as data:
        yield data


def page(admin: bool) -> AppTest:
    at = AppTest.from_file(str(ROOT / "views" / "api_keys.py"), default_timeout=TIMEOUT)
    if admin:
        at.session_state["admin_since"] = time.time()
    return at.run()


def test_agents_see_the_sign_in_only(app_env):
    at = page(admin=False)
    assert not at.exception and at.subheader[0].value == "Admin sign-in" and not at.title


def test_an_admin_creates_a_key_shown_once_and_revokes_it(app_env):
    from ui.api_keys import get_api_keys

    at = page(admin=True)
    at.text_input[0].set_value("Help desk")
    at.selectbox[0].set_value("admin")
    at.button[0].click().run()
    assert not at.exception
    shown = at.code[0].value
    record = get_api_keys().verify(shown)
    assert record is not None and record.name == "Help desk" and record.role == "admin"
    at.run()  # the next run no longer shows it
    assert not at.code and any(record.key_id in m.value for m in at.markdown)
    at.button(key=f"api_key_revoke_{record.key_id}").click().run()
    assert get_api_keys().verify(shown) is None
    assert any("revoked" in m.value for m in at.markdown)


def test_a_key_pasted_whole_to_revoke_is_revoked_and_never_echoed(tmp_path, capsys, monkeypatch):
    from cli.main import main

    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path))
    assert main(["api-keys", "create", "leaked"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[0]
    assert main(["api-keys", "revoke", key]) == 0 and main(["api-keys", "revoke", key[:-1]]) == 2
    said = capsys.readouterr()
    assert "revoked" in said.out and key.split("_", 2)[2][:20] not in said.out + said.err
    from chatbot.store.conversations import ConversationStore
    from common.settings import Settings

    store = ConversationStore.from_settings(Settings.load(secrets={}, data_dir=tmp_path))
    assert ApiKeys(lambda: store.client).verify(key) is None  # refused from now on
