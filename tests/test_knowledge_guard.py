"""A knowledge base that junk cannot poison, on real Chroma and the real keyword index: each kind of
junk is held by name while the rest of its batch is ingested, a confirmed file goes in, the demo
articles pass, and offline answers say nothing matched instead of quoting an unrelated article."""

from __future__ import annotations

import json
from pathlib import Path


from backends.offline import NOT_FOUND, RELEVANCE_FLOOR, OfflineBackend
from chatbot.services import DEMO_DOCS
from chatbot.turn.bot import Chatbot
from common.types import ChatRequest
from knowledge.shipped_vectors import load_shipped
from tests.conftest import make_kb
from tests.test_knowledge_store import PASSWORDS, REFUNDS

EVAL = Path(__file__).resolve().parent.parent / "knowledge" / "eval"
GOOD = ("shipping.md", b"# Shipping\n\nParcels leave our warehouse within two working days and arrive in three to "
                       b"five days. Tracking links are emailed when the parcel leaves.\n")


def statuses(results) -> dict[str, tuple[str, str]]:
    return {r.source: (r.status, r.error) for r in results}


def ingest_with_good(kb, name: str, data: bytes):
    """`name` uploaded in one batch with a good file; the good file must always go in."""
    found = statuses(kb.ingest_uploads([(name, data), GOOD]))
    assert found["shipping.md"][0] == "added", found
    return found[name]


def test_a_document_of_one_repeated_word_is_held_by_name(kb):
    status, reason = ingest_with_good(kb, "refund.md", b"# Refund\n\n" + b"refund " * 4000)
    assert status == "held" and 'one word repeated ("refund"' in reason
    assert [d.source for d in kb.documents()] == ["shipping.md"]


def test_a_document_of_a_few_words_over_and_over_is_held(kb):
    status, reason = ingest_with_good(kb, "spam.txt", b"buy cheap refund now " * 500)
    assert status == "held" and "only 4 different words" in reason


def test_a_document_of_thousands_of_empty_headings_is_held(kb):
    data = "".join(f"## Section {i}\n\n.\n\n" for i in range(3000)).encode()
    status, reason = ingest_with_good(kb, "headings.md", data)
    assert status == "held" and "mostly empty sections (3,000 of its 3,000 chunks" in reason
    assert kb.chunk_count() < 10  # nothing of it was written


def test_a_near_copy_of_a_stored_article_is_held_naming_the_original(kb):
    kb.ingest_uploads([("refunds.md", REFUNDS), ("passwords.md", PASSWORDS)])
    copy = REFUNDS.replace(b"refund", b"Refund").replace(b"  ", b" ") + b"\n"
    status, reason = ingest_with_good(kb, "refunds (1).md", copy)
    assert status == "held" and "copies of refunds.md" in reason


def test_an_exact_copy_within_one_upload_is_held_and_the_first_kept(kb):
    found = statuses(kb.ingest_uploads([("refunds.md", REFUNDS), ("refunds-again.md", REFUNDS), GOOD]))
    assert found["refunds.md"][0] == "added" and found["shipping.md"][0] == "added"
    assert found["refunds-again.md"][0] == "held" and "copies of refunds.md" in found["refunds-again.md"][1]


def test_a_changed_version_of_the_same_document_is_no_copy(kb):
    kb.ingest_uploads([("refunds.md", REFUNDS)])
    assert kb.ingest_uploads([("refunds.md", REFUNDS + b"\nRefunds to gift cards are instant.\n")])[0].status == "updated"


def test_a_file_that_would_be_most_of_the_base_is_held_until_confirmed(tmp_path, embedder):
    kb = make_kb(tmp_path, embedder, max_file_share=0.5)
    try:
        kb.ingest_paths([DEMO_DOCS], vectors=load_shipped(embedder))
        base = kb.chunk_count()
        big = "".join(f"## Part {i}\n\nThe thermostat schedule number {i} heats room {i % 7} to {18 + i % 5} degrees "
                      f"from {i % 24} o'clock and holds it for {i % 9 + 1} hours before eco mode resumes.\n\n"
                      for i in range(base + 50)).encode()
        status, reason = ingest_with_good(kb, "schedules.md", big)
        assert status == "held" and "of the knowledge base (the limit is 50%, CHATBOT_MAX_FILE_SHARE)" in reason
        again = kb.ingest_uploads([("schedules.md", big)], allow=["schedules.md"])[0]
        assert again.status == "added" and again.chunks > base
    finally:
        kb.close()


def test_a_small_base_takes_its_first_files_whatever_their_share(kb):
    assert statuses(kb.ingest_uploads([("refunds.md", REFUNDS)]))["refunds.md"][0] == "added"


def test_a_confirmed_file_is_ingested_anyway(kb):
    assert kb.ingest_uploads([("refund.md", b"refund " * 100)], allow=["refund.md"])[0].status == "added"


def test_none_of_the_demo_articles_is_held(tmp_path, embedder):
    kb = make_kb(tmp_path, embedder)
    try:
        results = kb.ingest_paths([DEMO_DOCS], vectors=load_shipped(embedder))
        assert {r.status for r in results} == {"added"}, [(r.source, r.error) for r in results if r.status != "added"]
    finally:
        kb.close()


# -- offline answers and the relevance floor --------------------------------------------------

def offline_reply(kb, question: str) -> str:
    return OfflineBackend().answer(ChatRequest(system="", messages=[{"role": "user", "content": question}],
                                               passages=kb.search(question, k=4), query=question))


def test_an_unrelated_question_gets_nothing_matched_not_an_unrelated_article(demo_kb, store):
    bot = Chatbot(knowledge=demo_kb, backend=OfflineBackend(), store=store)
    reply = bot.ask("off-topic", "who painted the mona lisa")
    assert NOT_FOUND in reply.text and "From **" not in reply.text


def test_every_answerable_eval_question_is_still_answered(demo_kb):
    queries = [json.loads(line)["query"] for line in (EVAL / "queries.jsonl").read_text().splitlines() if line]
    unanswered = [q for q in queries if NOT_FOUND in offline_reply(demo_kb, q)]
    assert unanswered == []


def test_most_off_topic_eval_questions_get_nothing_matched(demo_kb):
    queries = [json.loads(line)["query"] for line in (EVAL / "off_topic.jsonl").read_text().splitlines() if line]
    refused = [q for q in queries if NOT_FOUND in offline_reply(demo_kb, q)]
    assert len(refused) / len(queries) >= 0.7, RELEVANCE_FLOOR


def test_keyword_only_passages_are_still_quoted(demo_kb):
    passages = demo_kb.search("refund", k=2, mode="keyword")
    assert all(p.similarity is None for p in passages)
    request = ChatRequest(system="", messages=[{"role": "user", "content": "refund"}], passages=passages, query="refund")
    assert NOT_FOUND not in OfflineBackend().answer(request)


def test_the_knowledge_page_names_a_held_file_and_ingests_it_once_confirmed(tmp_path):
    import time

    from streamlit.testing.v1 import AppTest

    from tests.conftest import app_environment

    data = tmp_path / "data"
    (data / "knowledge").mkdir(parents=True)
    (data / "knowledge" / ".demo-seeded").write_text("seeded\n")
    with app_environment(data):
        at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "views" / "knowledge_base.py"),
                               default_timeout=120)
        at.session_state["admin_since"] = time.time()
        at.run()
        at.file_uploader(key="kb_upload").set_value([("refund.md", b"refund " * 400, "text/markdown"),
                                                     (GOOD[0], GOOD[1], "text/markdown")])
        at.button(key="kb_ingest").click()
        at.run()
        at.session_state["kb_job"].wait(120)
        at = at.run().run()
        assert not at.exception
        held = " ".join(w.value for w in at.warning)
        assert "**refund.md**: is one word repeated" in held
        assert any(s.value.startswith("1 document ") for s in at.subheader)
        at.button(key="kb_ingest_held").click()
        at.run()
        at.session_state["kb_job"].wait(120)
        at = at.run().run()
        assert not at.exception
        assert "**refund.md**: 4 chunks added" in " ".join(s.value for s in at.success)
        assert any(s.value.startswith("2 documents") for s in at.subheader)
