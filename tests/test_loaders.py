"""Loaders turn each supported file type into titled sections, and refuse bad files by name."""

from __future__ import annotations

import json

import pytest

from common.errors import IngestError
from knowledge.loaders import MAX_FILE_BYTES, load_bytes


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF with `text` on it, built by hand (no PDF writer dependency)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def test_markdown_keeps_title_category_and_heading_path():
    doc = load_bytes(
        "reset.md",
        b"---\ncategory: account\n---\n# Reset your password\nIntro.\n## In the app\nTap Forgot.\n"
        b"### If no email arrives\nCheck spam.\n",
    )
    assert doc.title == "Reset your password"
    assert doc.category == "account"
    assert [s.heading for s in doc.sections] == ["", "In the app", "In the app > If no email arrives"]
    assert doc.sections[2].text == "Check spam."


def test_text_html_and_pdf_are_read():
    assert "kettle" in load_bytes("notes.txt", b"The kettle is hot.").text
    html = load_bytes(
        "page.html",
        b"<html><head><title>Shipping</title><script>x=1</script></head><body><h2>Times</h2>"
        b"<p>Orders ship in 2 days.</p><ul><li>Express: 1 day</li></ul></body></html>",
    )
    assert html.title == "Shipping"
    assert html.sections[0].heading == "Times"
    assert "Orders ship in 2 days." in html.text and "x=1" not in html.text
    pdf = load_bytes("guide.pdf", minimal_pdf("Refunds take ten days"))
    assert "Refunds take ten days" in pdf.text


def test_faq_csv_and_jsonl_keep_each_question_with_its_answer():
    csv_doc = load_bytes("faq.csv", b"question,answer\nCan I pause?,Yes for 3 months.\nIs there VAT?,It is included.\n")
    assert [s.heading for s in csv_doc.sections] == ["Can I pause?", "Is there VAT?"]
    assert csv_doc.sections[0].text == "Q: Can I pause?\nA: Yes for 3 months."
    rows = [{"q": "Where is my order?", "a": "See Orders in the app."}]
    jsonl_doc = load_bytes("faq.jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    assert "See Orders in the app." in jsonl_doc.text


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("empty.md", b"   \n", "is empty"),
        ("photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR", "binary"),
        ("latin.txt", "caf\u00e9".encode("latin-1"), "not UTF-8"),
        ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "not a readable PDF"),
        ("faq.csv", b"name,email\nBob,bob@example.com\n", "needs a question column"),
        ("faq.jsonl", b'{"question": "x", "answer": "y"}\nnot json\n', "line 2 is not valid JSON"),
        ("slides.pptx", b"PK\x03\x04", "unsupported file type .pptx"),
    ],
)
def test_bad_files_are_refused_by_name_with_the_reason(name, data, reason):
    with pytest.raises(IngestError) as err:
        load_bytes(name, data)
    assert err.value.source == name
    assert reason in str(err.value)


def test_oversized_upload_is_refused():
    with pytest.raises(IngestError, match="the limit is"):
        load_bytes("huge.txt", b"a" * (MAX_FILE_BYTES + 1))
