"""Text read as the same text: other Unicode forms of a query or a document find the same passages,
through the real keyword index and real Chroma, and a keyword index saved before normalisation
is rebuilt instead of trusted."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest

from common.text import fold
from knowledge import bm25
from knowledge.keyword import KeywordIndex
from knowledge.types import Chunk, Document, Section
from tests.conftest import make_kb

ARTICLES = [
    ("error-codes.md", "Camera error codes",
     "E-102 means the camera lost its Wi-Fi connection: move the router closer and restart the camera. "
     "E-230 means the memory card is full."),
    ("rueckerstattung.md", "Rückerstattung beantragen",
     "Eine Rückerstattung beantragen Sie unter Bestellungen; das Geld ist nach zehn Tagen zurück."),
    ("firmware.md", "Firmware updates",
     "A firmware update installs overnight; keep the thermostat powered. Heating area up to 120 m2."),
    ("parcels.md", "Tracking a parcel",
     "Track your parcel with the link in the shipping email; couriers update it every evening."),
]


@pytest.fixture(scope="module")
def forms_kb(tmp_path_factory, embedder):
    kb = make_kb(tmp_path_factory.mktemp("forms-kb"), embedder)
    for source, title, text in ARTICLES:
        kb.ingest_document(Document(source=source, title=title, sections=[Section("", text)]))
    yield kb
    kb.close()


# (the form an article or a customer uses, the plain form), each pair one kind of difference.
FORMS = [
    ("Ｅ－１０２ on my camera", "E-102 on my camera"),  # full-width letters, digits and hyphen
    ("E\u2011102 on my camera", "E-102 on my camera"),  # non-breaking hyphen
    ("E\u2013102 on my camera", "E-102 on my camera"),  # en dash
    (unicodedata.normalize("NFD", "Rückerstattung beantragen"), "Rückerstattung beantragen"),  # NFD against NFC
    ("RÜCKERSTATTUNG BEANTRAGEN", "Rückerstattung beantragen"),  # case
    ("\ufb01rmware update overnight", "firmware update overnight"),  # the fi ligature
    ("heating area 120 m\u00b2", "heating area 120 m2"),  # superscript two
    ("track\u00a0my\u202fparcel", "track my parcel"),  # no-break and narrow no-break spaces
]


@pytest.mark.parametrize("written, plain", FORMS)
def test_each_form_folds_to_the_plain_one(written, plain):
    assert fold(written) == fold(plain)
    assert bm25.terms(written) == bm25.terms(plain)


@pytest.mark.parametrize("mode", ["keyword", "vector", "hybrid"])
@pytest.mark.parametrize("written, plain", FORMS)
def test_a_query_in_another_form_finds_what_the_plain_form_finds(forms_kb, mode, written, plain):
    found = [(p.source, p.chunk) for p in forms_kb.search(written, k=3, mode=mode)]
    expected = [(p.source, p.chunk) for p in forms_kb.search(plain, k=3, mode=mode)]
    assert found and found == expected


def test_a_document_written_in_full_width_and_nfd_is_found_by_plain_queries(tmp_path, embedder):
    kb = make_kb(tmp_path, embedder)
    try:
        odd = ("Ｅｒｒｏｒ Ｅ－７７ means the doorbell chime is unplugged. "
               + unicodedata.normalize("NFD", "Die Rückerstattung für die Türklingel dauert zehn Tage."))
        for source, title, text in [("odd.md", "Doorbell chime", odd), *[(s, t, x) for s, t, x in ARTICLES]]:
            kb.ingest_document(Document(source=source, title=title, sections=[Section("", text)]))
        for query, mode in [("error E-77", "keyword"), ("Türklingel", "keyword"), ("error E-77 chime", "vector")]:
            assert kb.search(query, k=1, mode=mode)[0].source == "odd.md", (query, mode)
    finally:
        kb.close()


def test_the_embedder_embeds_every_form_of_a_text_alike(embedder):
    vectors = embedder.embed([written for written, _ in FORMS] + [plain for _, plain in FORMS])
    half = len(FORMS)
    assert np.allclose(vectors[:half], vectors[half:], atol=1e-6)


def _old_terms(text: str) -> list[str]:
    """How terms were made before normalisation: lower-cased only."""
    return [bm25._stem(w) for w in bm25._WORD.findall(text.lower()) if w not in bm25.STOP_WORDS]


def test_a_keyword_snapshot_saved_before_normalisation_is_rebuilt(tmp_path, monkeypatch):
    chunk = Chunk(doc_id="codes", source="codes.md", title="Ｃａｍｅｒａ ｃｏｄｅｓ", heading="", index=0,
                  text="Ｅ－１０２ means the camera lost its Wi-Fi.", version="v1")
    with monkeypatch.context() as old:
        old.setattr(bm25, "terms", _old_terms)
        old.setattr(bm25, "SNAPSHOT_FORMAT", 1)
        index = KeywordIndex(tmp_path / "keywords.sqlite")
        index.replace("codes", [chunk], version="v1")
        assert index.search("E-102", 3) == []  # the old index could not find it
        index.close()  # saves the snapshot, in the old form
    assert (tmp_path / "keywords.sqlite.bm25.npz").exists()
    index = KeywordIndex(tmp_path / "keywords.sqlite")
    try:
        assert [cid for cid, _ in index.search("E-102 camera", 3)] == ["codes:v1:0"]
    finally:
        index.close()
