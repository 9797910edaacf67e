"""Versions on disk: immutable, hashed, labelled, concurrent-safe, and used by the chat turn."""

from __future__ import annotations

import hashlib
import json
import os
import threading

import pytest

from chatbot.turn.bot import Chatbot
from common.errors import ChatbotError, PromptNotFound, PromptValidationError, StaleVersionError
from chatbot.prompts.store import FilePromptStore
from chatbot.prompts.library import PromptLibrary, open_prompt_library, shipped_templates
from tests.fakes import FakeBackend
from tests.test_store import REFUNDS


def edit(library: PromptLibrary, name: str, old: str, new: str, version: int | None = None) -> str:
    text = library.version(name, version).text
    assert old in text
    return text.replace(old, new, 1)


def test_first_open_seeds_the_shipped_templates_as_production_v1(tmp_path):
    library = open_prompt_library(tmp_path)
    assert set(library.names()) == set(shipped_templates())
    for name, text in shipped_templates().items():
        info = library.version(name)
        assert (info.version, info.author, info.text) == (1, "system", text)
        assert info.sha256 == hashlib.sha256(text.encode()).hexdigest()
        assert library.labels(name) == {"production": 1, "draft": 1, "latest": 1}
    assert (tmp_path / "prompts" / "versions" / "billing" / "v0001.json").exists()


def test_every_save_is_a_new_version_with_hash_author_time_and_message(tmp_path):
    library = open_prompt_library(tmp_path)
    text = edit(library, "billing", "Calm, precise", "Calm, friendly, precise")
    info = library.save("billing", text, author="maria", message="Friendlier tone", base_version=1)
    assert (info.version, info.author, info.message, info.base_version) == (2, "maria", "Friendlier tone", 1)
    assert info.sha256 == hashlib.sha256(text.encode()).hexdigest() and info.created_at > 0
    # A save is a draft: the chat still uses v1 until it is published.
    assert library.labels("billing") == {"production": 1, "draft": 2, "latest": 2}
    assert library.get("billing")[1] == 1
    assert [v.version for v in library.history("billing")] == [2, 1]
    assert library.version("billing", 1).text == shipped_templates()["billing"]  # v1 untouched
    diff = library.diff("billing", 1, 2)
    assert "-    Calm, precise" in diff and "+    Calm, friendly, precise" in diff


def test_saving_the_same_text_again_writes_nothing(tmp_path):
    library = open_prompt_library(tmp_path)
    same = library.save("general", library.version("general").text, author="a", message="no-op", base_version=1)
    assert same.version == 1 and len(library.history("general")) == 1


@pytest.mark.parametrize("version", [0, -3, 10**23, 10**300])
def test_a_version_number_no_save_made_is_not_found_whatever_its_size(tmp_path, version):
    library = open_prompt_library(tmp_path)  # a number of 250 digits would be too long a file name
    with pytest.raises(PromptNotFound, match="'billing' has no version"):
        library.store.version("billing", version)


def test_publish_and_rollback_move_production_only(tmp_path):
    library = open_prompt_library(tmp_path)
    for n in (1, 2):
        text = edit(library, "general", "Warm, concise", f"Warm (rev {n}), concise", version=1)
        library.save("general", text, author="ana", message=f"rev {n}", base_version=n)
    assert library.publish("general", author="ana") == 1  # the draft, v3
    assert library.get("general")[1] == 3
    assert library.rollback("general", 2, author="ben") == 3
    assert library.get("general")[1] == 2
    assert [v.version for v in library.history("general")] == [3, 2, 1]  # rollback deletes nothing
    with pytest.raises(PromptValidationError, match="not earlier than production v2"):
        library.rollback("general", 3, author="ben")
    with pytest.raises(PromptNotFound, match="has no version 9"):
        library.version("general", 9)
    moves = [(e["action"], e["from"], e["version"], e["author"]) for e in library.store.events("general")
             if e["action"] != "save"]
    assert moves == [("publish", 1, 3, "ana"), ("rollback", 3, 2, "ben")]


def test_a_stale_save_is_refused_and_nothing_is_lost(tmp_path):
    first, second = open_prompt_library(tmp_path), open_prompt_library(tmp_path)  # two admins, two servers
    mine = edit(first, "billing", "Calm, precise", "Calm, kind, precise")
    theirs = edit(second, "billing", "Calm, precise", "Calm, brisk, precise")
    second.save("billing", theirs, author="ben", message="Brisker", base_version=1)
    with pytest.raises(StaleVersionError) as caught:
        first.save("billing", mine, author="ana", message="Kinder", base_version=1)
    message = str(caught.value)
    assert "saved as v2 by ben" in message and "Brisker" in message and "after you opened v1" in message
    assert (caught.value.base_version, caught.value.latest_version) == (1, 2)
    assert [v.message for v in first.history("billing")] == ["Brisker", "Shipped template"]
    # Based on the version they now see, the same text saves.
    assert first.save("billing", mine, author="ana", message="Kinder", base_version=2).version == 3


def test_concurrent_saves_on_the_same_base_let_exactly_one_through(tmp_path):
    open_prompt_library(tmp_path)
    root = tmp_path / "prompts"
    base_text = shipped_templates()["general"]
    results: list = []
    barrier = threading.Barrier(6)

    def writer(n: int) -> None:
        store = FilePromptStore(root)  # its own locks and caches, like another server process
        barrier.wait()
        try:
            results.append(store.save("general", base_text + f"\n# writer {n}\n", author=f"w{n}",
                                      message=f"writer {n}", base_version=1).version)
        except StaleVersionError:
            results.append("stale")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=str) == [2, *["stale"] * 5]
    assert sorted(p.name for p in (root / "versions" / "general").iterdir()) == ["v0001.json", "v0002.json"]
    assert not [p for p in root.rglob(".tmp-*")]  # no half-written files left behind


def test_history_and_labels_survive_a_restart(tmp_path):
    library = open_prompt_library(tmp_path)
    text = edit(library, "account", "Reassuring and careful", "Reassuring, careful")
    library.save("account", text, author="ana", message="Shorter tone", base_version=1, publish=True)
    del library
    reopened = open_prompt_library(tmp_path)  # seeding again must not add or change anything
    assert reopened.labels("account") == {"production": 2, "draft": 2, "latest": 2}
    assert reopened.version("account").text == text
    assert [v.message for v in reopened.history("account")] == ["Shorter tone", "Shipped template"]


def test_an_altered_version_file_is_reported_not_used(tmp_path):
    library = open_prompt_library(tmp_path)
    path = tmp_path / "prompts" / "versions" / "handoff" / "v0001.json"
    record = json.loads(path.read_text())
    record["text"] = record["text"].replace("at most 6 lines", "at most 60 lines")
    os.chmod(path, 0o600)
    path.write_text(json.dumps(record))
    with pytest.raises(ChatbotError, match="does not match its SHA-256"):
        open_prompt_library(tmp_path).version("handoff", 1)


def test_invalid_text_and_missing_message_are_refused_before_anything_is_written(tmp_path):
    library = open_prompt_library(tmp_path)
    bad = edit(library, "technical", "Patient and practical", "Patient and {mood}")
    with pytest.raises(PromptValidationError) as caught:
        library.save("technical", bad, author="ana", message="moodier", base_version=1)
    assert caught.value.line and "unknown variable {mood}" in str(caught.value)
    with pytest.raises(PromptValidationError, match="Describe the change"):
        library.save("technical", library.version("technical").text + "\n", author="ana", message=" ",
                     base_version=1)
    assert len(library.history("technical")) == 1


def test_a_new_template_starts_at_v1_and_an_existing_name_is_refused(tmp_path):
    library = open_prompt_library(tmp_path)
    text = shipped_templates()["general"].replace("name: general", "name: returns", 1)
    info = library.save("returns", text, author="ana", message="Returns desk", base_version=0)
    assert info.version == 1 and library.get("returns")[1] == 1
    with pytest.raises(StaleVersionError, match="already exists"):
        library.save("returns", text, author="ben", message="again", base_version=0)


# -- the chat turn uses the production version, and records which --------------------------------

def test_a_chat_turn_uses_and_records_the_production_version(tmp_path, kb, store, embedder):
    kb.ingest_upload("refunds.md", REFUNDS)
    library = open_prompt_library(tmp_path, embedder)
    backend = FakeBackend(["One [1].", "Two [1].", "Three [1].", "Four [1]."])
    bot = Chatbot(knowledge=kb, backend=backend, store=store, prompts=library)

    first = bot.ask("s1", "How do I get a refund?")
    v1 = library.version("general", 1)
    assert (first.meta.prompt_name, first.meta.prompt_version, first.meta.prompt_hash) == ("general", 1, v1.sha256)

    text = edit(library, "general", "Warm, concise and professional.", "MARKER-TONE warm and brief.")
    library.save("general", text, author="ana", message="Shorter tone", base_version=1)
    bot.ask("s1", "And how long does it take?")
    assert "MARKER-TONE" not in backend.requests[-1].system  # a draft is not live

    # Published from another process sharing the data dir: seen on the next turn, no restart.
    open_prompt_library(tmp_path).publish("general", 2, author="ana")
    third = bot.ask("s1", "Thanks, and to my card?")
    assert "MARKER-TONE warm and brief." in backend.requests[-1].system
    assert (third.meta.prompt_version, third.meta.prompt_hash) == (2, library.version("general", 2).sha256)

    library.rollback("general", 1, author="ben")
    fourth = bot.ask("s1", "One more question")
    assert "MARKER-TONE" not in backend.requests[-1].system and fourth.meta.prompt_version == 1
    stored = [m.meta for m in store.messages("s1") if m.role == "assistant"]
    assert [(m.prompt_name, m.prompt_version) for m in stored] == [
        ("general", 1), ("general", 1), ("general", 2), ("general", 1)
    ]


def test_an_event_with_a_unicode_line_separator_is_read_back_whole(tmp_path):
    library = open_prompt_library(tmp_path)
    text = edit(library, "general", "Warm, concise", "Warm, concise, exact")
    library.save("general", text, author="ana", message="Tone\u2028and\u2029length", base_version=1)
    saves = [e for e in library.store.events("general") if e["action"] == "save"]
    assert [e.get("message") for e in saves][-1] == "Tone\u2028and\u2029length"
