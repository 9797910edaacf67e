"""The API's key check awaited on the event loop (api/key_check.py): the same answers and the same
rate windows as the blocking check, in the real embedded Redis, across event loops and a store
that replaced its client."""

from __future__ import annotations

import asyncio

import pytest
import redis

from api.key_check import KeyCheck
from chatbot.access.api_keys import ApiKeys, KeyLimitReached
from chatbot.store.server import async_twin


@pytest.fixture
def store(tmp_path):
    from chatbot.store.conversations import ConversationStore
    from common.settings import Settings

    return ConversationStore.from_settings(Settings.load(secrets={}, data_dir=tmp_path))


def test_the_awaited_check_accepts_and_refuses_the_keys_the_blocking_one_does(store):
    keys = ApiKeys(lambda: store.client)
    check = KeyCheck(keys, lambda: store.client)
    record, key = keys.create("crm", "agent")
    revoked, revoked_key = keys.create("old", "agent")
    keys.revoke(revoked.key_id)
    keys.settle_tokens(record, "", 7)

    async def verify_all() -> list:
        try:
            return [await check.verify(given) for given in
                    (key, key + "x", key.replace(record.key_id, "00000000"), revoked_key, "not a key")]
        finally:
            await check.close()

    found = asyncio.run(verify_all())
    assert found[0] == record and found[0].used_today == 7
    assert found[1:] == [None, None, None, None]


def test_the_awaited_and_blocking_checks_count_in_one_window(store):
    keys = ApiKeys(lambda: store.client)
    check = KeyCheck(keys, lambda: store.client)
    record, _ = keys.create("tight", "agent", requests_per_minute=3)
    keys.admit(record)

    async def admit_twice() -> None:
        try:
            await check.admit(record)
            await check.admit(record)
        finally:
            await check.close()

    asyncio.run(admit_twice())  # the 2nd and 3rd requests of the minute
    with pytest.raises(KeyLimitReached) as blocking:
        keys.admit(record)
    with pytest.raises(KeyLimitReached) as awaited:
        asyncio.run(admit_twice())
    assert 0 < awaited.value.retry_after <= 60 and awaited.value.limit == blocking.value.limit == "requests"


def test_a_replaced_store_client_is_followed_on_every_event_loop(store, tmp_path_factory):
    from chatbot.store.conversations import ConversationStore
    from common.settings import Settings

    # The store's client replaced by one to another server (as after the embedded one restarts).
    other = ConversationStore.from_settings(Settings.load(secrets={}, data_dir=tmp_path_factory.mktemp("other")))
    client = [store.client]
    keys = ApiKeys(lambda: client[0])
    check = KeyCheck(keys, lambda: client[0])
    _, first = keys.create("before", "agent")

    async def accepted(key: str) -> bool:
        return await check.verify(key) is not None

    async def across_the_switch() -> tuple[bool, bool, bool]:
        before = await accepted(first)
        client[0] = other.client
        _, second = keys.create("after", "agent")
        return before, await accepted(second), await accepted(first)

    assert asyncio.run(accepted(first))
    assert asyncio.run(across_the_switch()) == (True, True, False)  # on one loop, and on a second one


def test_the_asyncio_client_goes_where_the_blocking_one_goes():
    plain = async_twin(redis.Redis.from_url("redis://:secret@cache.internal:6390/3", socket_timeout=5))
    tls = async_twin(redis.Redis.from_url("rediss://desk:secret@cache.example:6380/0?ssl_cert_reqs=none"))
    settings = plain.connection_pool.connection_kwargs
    assert (settings["host"], settings["port"], settings["db"], settings["password"], settings["socket_timeout"]) \
        == ("cache.internal", 6390, 3, "secret", 5)
    assert "SSL" not in plain.connection_pool.connection_class.__name__
    settings = tls.connection_pool.connection_kwargs
    assert "SSL" in tls.connection_pool.connection_class.__name__
    assert (settings["host"], settings["username"], settings["ssl_cert_reqs"]) == ("cache.example", "desk", "none")
