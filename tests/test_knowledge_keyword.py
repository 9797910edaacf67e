"""The keyword index: BM25 ranking, documents replaced and deleted as a whole, restarts and snapshots."""

from __future__ import annotations

import pytest

from knowledge import bm25
from knowledge.bm25 import terms
from knowledge.keyword import KeywordIndex
from knowledge.types import Chunk


def chunk(doc: str, index: int, text: str, title: str = "Article", category: str = "", version: str = "v1") -> Chunk:
    return Chunk(doc_id=doc, source=f"{doc}.md", title=title, heading="", index=index, text=text,
                 category=category, version=version)


@pytest.fixture
def index(tmp_path):
    made = KeywordIndex(tmp_path / "keywords.sqlite")
    yield made
    made.close()


def test_terms_are_stemmed_without_stop_words_and_codes_kept():
    assert terms("Where is my Refunds? Charged twice for the E21 error") == ["refund", "charg", "twice", "e21", "error"]


def test_rarer_and_more_frequent_matches_rank_higher(index):
    index.replace("a", [chunk("a", 0, "Refunds are paid back to your card within ten days.")])
    index.replace("b", [chunk("b", 0, "Track your parcel with the tracking link in your email.")])
    index.replace("c", [chunk("c", 0, "Refund a refund: refunds for refunded orders and your card.")])
    ranked = [cid.split(":")[0] for cid, _ in index.search("refund to my card", 5)]
    assert ranked == ["c", "a"]
    assert index.search("the and of", 5) == []


def test_replacing_and_deleting_documents_keeps_rows_and_results_consistent(index):
    index.replace("a", [chunk("a", 0, "Refunds take ten days."), chunk("a", 1, "Ask in the app.")])
    index.replace("b", [chunk("b", 0, "Reset the thermostat.")])
    index.replace("a", [chunk("a", 0, "Returns are free for thirty days.", version="v2")], version="v2")
    assert index.count() == 2
    assert index.search("refunds ten", 5) == []
    assert [cid for cid, _ in index.search("returns free", 5)] == ["a:v2:0"]
    assert index.versions() == {"a": "v2", "b": ""}
    index.delete("b")
    assert index.count() == 1 and index.search("thermostat", 5) == []
    rows = index.rows(["a:v2:0", "gone:1"])
    assert list(rows) == ["a:v2:0"] and rows["a:v2:0"].text == "Returns are free for thirty days."


def test_filters_by_category_and_source(index):
    index.replace("a", [chunk("a", 0, "Refund to your card.", category="refunds")])
    index.replace("b", [chunk("b", 0, "Card payments are taken on delivery.", category="billing")])
    assert [cid for cid, _ in index.search("card", 5, {"category": "billing"})] == ["b:v1:0"]
    assert [cid for cid, _ in index.search("card", 5, {"source": "a.md"})] == ["a:v1:0"]
    assert index.search("card", 5, {"category": "unknown"}) == []


def test_many_deletes_compact_the_postings_without_changing_results(index, monkeypatch):
    monkeypatch.setattr(bm25, "COMPACT_DEAD_SHARE", 0.1)
    for n in range(30):
        index.replace(f"d{n}", [chunk(f"d{n}", 0, f"Document {n} about pairing the doorbell number{n}.")])
    for n in range(0, 30, 2):
        index.delete(f"d{n}")
    assert index.count() == 15
    found = {cid.split(":")[0] for cid, _ in index.search("pairing doorbell", 50)}
    assert found == {f"d{n}" for n in range(1, 30, 2)}
    assert [cid for cid, _ in index.search("number7", 5)] == ["d7:v1:0"]


def test_the_index_survives_a_restart_from_its_snapshot_or_from_the_rows(tmp_path):
    path = tmp_path / "keywords.sqlite"
    first = KeywordIndex(path)
    first.replace("a", [chunk("a", 0, "Refunds take ten days.")])
    first.close()  # writes a snapshot
    snapshot = path.with_name(path.name + ".bm25.npz")
    assert snapshot.exists()
    again = KeywordIndex(path)
    assert [cid for cid, _ in again.search("refund", 5)] == ["a:v1:0"]
    # Another process writes rows: a snapshot of the old rows is not trusted.
    other = KeywordIndex(path)
    other.replace("b", [chunk("b", 0, "Refund status is in the app.")])
    assert again.refresh()
    assert {cid for cid, _ in again.search("refund", 5)} == {"a:v1:0", "b:v1:0"}
    other.close()
    again.close()
    snapshot.unlink()
    rebuilt = KeywordIndex(path)
    assert {cid for cid, _ in rebuilt.search("refund", 5)} == {"a:v1:0", "b:v1:0"}
    rebuilt.close()


def test_in_flight_journal_is_durable_until_finished(tmp_path):
    path = tmp_path / "keywords.sqlite"
    first = KeywordIndex(path)
    first.begin([("a", "v2", "v1")])
    first.close()
    again = KeywordIndex(path)
    assert again.in_flight() == [("a", "v2", "v1")]
    again.finish([("a", "v2")])
    assert again.in_flight() == []
    again.close()


def test_another_process_writes_are_read_document_by_document(tmp_path, monkeypatch):
    path = tmp_path / "keywords.sqlite"
    app, other = KeywordIndex(path), KeywordIndex(path)  # two processes' indexes on one database
    app.apply(replace={"a": ("v1", [chunk("a", 0, "Refunds take ten days.")]),
                       "b": ("v1", [chunk("b", 0, "Reset the thermostat.")])})
    assert other.refresh() and [cid for cid, _ in other.search("thermostat", 5)] == ["b:v1:0"]
    # The command line replaces one document and deletes another; the app reads only those two.
    other.apply(replace={"a": ("v2", [chunk("a", 0, "Refunds take fourteen days.", version="v2")])}, delete=["b"])
    monkeypatch.setattr(KeywordIndex, "_rebuild", lambda self: pytest.fail("a running index rebuilt"))
    assert app.refresh() and not app.refresh()
    assert [cid for cid, _ in app.search("fourteen days", 5)] == ["a:v2:0"]
    assert app.search("thermostat", 5) == [] and app.count() == 1
    monkeypatch.undo()
    fresh = KeywordIndex(tmp_path / "keywords.sqlite")
    assert fresh.search("refund days", 5) == app.search("refund days", 5)
    for made in (app, other, fresh):
        made.close()
