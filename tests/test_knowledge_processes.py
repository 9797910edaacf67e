"""Several processes on one data directory, every one of them real: the running app (its services
built in this process), `python -m chatbot ingest` and `delete` beside it, and two writers at once.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from common.errors import VectorStoreBusy
from tests.conftest import ROOT

LOYALTY = "# Loyalty points\n\nEvery euro spent earns ten Nimbus points; 500 points buy a free smart plug.\n"
QUESTION = "How many points do I need for a free smart plug?"


def cli(data_dir, *args: str) -> subprocess.Popen:
    env = {**os.environ, "CHATBOT_DATA_DIR": str(data_dir), "CHATBOT_BACKEND": "offline"}
    return subprocess.Popen([sys.executable, "-m", "chatbot", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finished(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err


@pytest.fixture(scope="module")
def app(tmp_path_factory, embedder):
    """The running app: services built once, demo articles seeded, a first search made."""
    from chatbot.services import build_services
    from common.settings import Settings

    services = build_services(Settings(data_dir=tmp_path_factory.mktemp("shared-data")))
    assert services.knowledge.search("How do I get a refund?", k=2)  # the vector indexes are in memory now
    yield services
    services.knowledge.close()
    services.store.client.shutdown(save=True)


def sources(passages) -> list[str]:
    return [p.source for p in passages]


def test_an_article_ingested_from_the_command_line_is_found_by_the_running_app(app, tmp_path):
    from backends.offline import OfflineBackend

    kb = app.knowledge
    article = tmp_path / "loyalty-points.md"
    article.write_text(LOYALTY)
    assert "loyalty-points.md" not in sources(kb.search(QUESTION))
    code, out, err = finished(cli(app.settings.data_dir, "ingest", str(article)))
    assert code == 0, err
    assert "loyalty-points.md: added" in out
    # No restart and no waiting: the next search sees the writer's marker and reopens the store.
    for mode in ("vector", "keyword", "hybrid"):
        assert sources(kb.search(QUESTION, k=3, mode=mode))[0] == "loyalty-points.md", mode
    # A filter naming the new chunks is what failed with "Error finding id" on a stale client.
    assert sources(kb.search(QUESTION, k=3, mode="vector", where={"source": "loyalty-points.md"})) == [
        "loyalty-points.md"]
    assert kb.degraded == ""
    assert "loyalty-points.md" in [d.source for d in kb.documents()]
    stats = kb.stats()
    assert stats["chunks"] == stats["vectors_stored"] == stats["keyword_rows"]
    reply = app.build_chatbot(OfflineBackend()).ask(app.store.new_id(), QUESTION)
    assert "loyalty-points.md" in sources(reply.passages)


def test_a_document_deleted_from_the_command_line_is_gone_from_the_running_app(app):
    kb = app.knowledge
    kb.ingest_upload("gift-cards.md", b"# Gift cards\n\nGift cards never expire and can pay for any order.\n")
    question = "Do gift cards expire?"
    assert sources(kb.search(question, k=1, mode="vector")) == ["gift-cards.md"]
    code, out, err = finished(cli(app.settings.data_dir, "delete", "gift-cards.md"))
    assert code == 0, err
    assert "gift-cards.md: deleted" in out
    for mode in ("vector", "keyword", "hybrid"):
        assert "gift-cards.md" not in sources(kb.search(question, k=5, mode=mode)), mode
    assert "gift-cards.md" not in [d.source for d in kb.documents()]
    missing = cli(app.settings.data_dir, "delete", "gift-cards.md")
    code, out, _ = finished(missing)
    assert code == 1 and "gift-cards.md: not in the knowledge base" in out


def article(name: str, sections: int = 12) -> str:
    body = "\n".join(f"## Part {n}\nThe {name} procedure, part {n}: press the {name} button {n} times."
                     for n in range(sections))
    return f"# The {name} procedure\n\n{body}\n"


def test_two_processes_ingesting_at_once_both_land_and_nothing_is_lost(app, tmp_path):
    names = {"a": ["amber", "azure", "aqua", "apricot"], "b": ["beige", "bronze", "blush", "brick"]}
    for folder, words in names.items():
        (tmp_path / folder).mkdir()
        for word in words:
            (tmp_path / folder / f"{word}.md").write_text(article(word))
    writers = [cli(app.settings.data_dir, "ingest", str(tmp_path / folder)) for folder in names]
    for writer in writers:
        code, out, err = finished(writer)
        assert code == 0, err
        assert out.count(": added") == 4, out
    kb = app.knowledge
    listed = {d.source: d.chunks for d in kb.documents()}
    for word in names["a"] + names["b"]:
        source = f"{word}.md"
        assert listed.get(source) == 12, source
        # Every chunk's vector is there: writers at once on an embedded store lose some otherwise.
        found = kb.search(f"the {word} procedure", k=50, mode="vector", where={"source": source})
        assert len(found) == 12, source
        assert sources(kb.search(f"press the {word} button", k=1))[0] == source
    assert kb.degraded == ""
    stats = kb.stats()
    assert stats["chunks"] == stats["vectors_stored"] == stats["keyword_rows"]


HOLD_THE_LOCK = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_write_waits_for_another_process_then_gives_up_with_a_clear_message(app):
    from knowledge.client import LOCK

    kb = app.knowledge
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, os.path.join(kb._store.directory, LOCK)],
                              stdout=subprocess.PIPE, text=True)
    patience = kb._store.write_wait
    try:
        assert holder.stdout.readline().strip() == "held"
        kb._store.write_wait = 0.5
        with pytest.raises(VectorStoreBusy, match="Another process is writing to the knowledge base"):
            kb.ingest_upload("coupons.md", b"# Coupons\n\nOne coupon per order.\n")
        # Readers never wait for the lock: the app keeps answering.
        assert sources(kb.search("How do I get a refund?", k=1))
        assert "coupons.md" not in [d.source for d in kb.documents()]
    finally:
        holder.kill()
        holder.wait()
        kb._store.write_wait = patience
    assert kb.ingest_upload("coupons.md", b"# Coupons\n\nOne coupon per order.\n").status == "added"
    assert sources(kb.search("How many coupons per order?", k=1)) == ["coupons.md"]
