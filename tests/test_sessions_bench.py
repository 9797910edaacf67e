"""`bench-sessions`: its integrity check catches lost and reordered messages, and a small run is clean."""

from __future__ import annotations

import pytest

from chatbot.store.messages import Message
from chatbot.turn.bot import Chatbot
from bench.sessions import TimedStore, bench, check, user_text
from tests.test_store import PASSWORDS, REFUNDS


def stored(conversation: int, turns: int) -> list[Message]:
    messages = []
    for t in range(turns):
        messages += [{"role": "user", "content": user_text(conversation, t)}, {"role": "assistant", "content": "a"}]
    return [Message.from_stored(m) for m in messages]


def test_check_counts_lost_reordered_and_duplicated_messages():
    assert check(stored(3, 4), 3, 4) == {"lost": 0, "reordered": 0, "duplicated": 0}
    missing_turn = stored(3, 4)[:2] + stored(3, 4)[4:]
    assert check(missing_turn, 3, 4)["lost"] == 1
    missing_reply = stored(3, 4)[:3] + stored(3, 4)[4:]
    assert check(missing_reply, 3, 4)["lost"] == 1
    swapped = stored(3, 4)
    swapped[0:2], swapped[2:4] = swapped[2:4], swapped[0:2]
    assert check(swapped, 3, 4)["reordered"] == 2
    assert check(stored(3, 4) + stored(3, 4)[:2], 3, 4)["duplicated"] == 1


def test_timed_store_adds_up_each_threads_calls(store):
    timed = TimedStore(store)
    timed.append("c", [{"role": "user", "content": "x"}], {"memory": {}})
    timed.state("c")
    spent = timed.take()
    assert set(spent) == {"append", "state", "cpu"} and all(v > 0 for v in spent.values())
    assert timed.take() == {} and timed.ttl == store.ttl


class SmallServices:
    """The two parts of the app's services that the benchmark uses."""

    def __init__(self, kb, store):
        self.knowledge, self.store = kb, store

    def build_chatbot(self, backend) -> Chatbot:
        return Chatbot(knowledge=self.knowledge, backend=backend, store=self.store)


@pytest.mark.parametrize("pause_ms", [0.0, 5.0], ids=["back-to-back", "paced"])
def test_a_small_concurrent_run_loses_and_reorders_nothing(kb, store, pause_ms):
    kb.ingest_upload("refunds.md", REFUNDS)
    kb.ingest_upload("passwords.md", PASSWORDS)
    outcome = bench(SmallServices(kb, store), conversations=4, turns=3, workers=4, pause_ms=pause_ms)
    assert (outcome["lost"], outcome["reordered"], outcome["duplicated"]) == (0, 0, 0)
    assert all(len(values) == 12 for values in outcome["samples"].values())
    assert all(s >= r for s, r in zip(outcome["samples"]["store"], outcome["samples"]["read"]))
    assert outcome["server_ms_per_turn"] > 0


def test_the_command_reports_a_clean_run_as_json(capsys):
    import json

    from cli.main import main

    assert main(["bench-sessions", "--conversations", "2", "--turns", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["turns_done"] == 2 and result["lost"] == result["reordered"] == result["duplicated"] == 0
    assert result["turn_p95_ms"] >= result["turn_p50_ms"] > 0
