"""Each format read by its own rules: CommonMark, visible HTML text, JSON Lines, RFC 4180 CSV,
Unicode encodings, encrypted PDFs; and files refused by name with the line that is wrong."""

from __future__ import annotations

import base64
import codecs
import io
import json

import pytest

from common.errors import IngestError
from knowledge.chunking import chunk_document
from knowledge.loaders import clean_name, load_bytes
from tests.test_loaders import minimal_pdf

# A permissions-only PDF as pypdf writes it: AES-256, empty open password (any viewer opens it).
AES_PERMISSIONS_ONLY_PDF = base64.b64decode("""
JVBERi0xLjMKJeLjz9MKMSAwIG9iago8PAovUHJvZHVjZXIgPGRlZWU4ZjhlYmUyYjEzNDc5M2I3OTM5MWMxNTU4MjFkZWViZjAx
MTUxZGVmYjZjYjRiNDMzYjI1NDNmZmEwNTY+Ci9UaXRsZSA8NWJhYTJiYWZhZDM1Y2UxMGQxMzY5Mjk5NzJmYjc1ZDI2OTc5ODBl
MGYyMzM2ZjM0OTg1YTE2MTA5NzRiYjNkMz4KPj4KZW5kb2JqCjIgMCBvYmoKPDwKL1R5cGUgL1BhZ2VzCi9Db3VudCAxCi9LaWRz
IFsgNCAwIFIgXQo+PgplbmRvYmoKMyAwIG9iago8PAovVHlwZSAvQ2F0YWxvZwovUGFnZXMgMiAwIFIKPj4KZW5kb2JqCjQgMCBv
YmoKPDwKL1R5cGUgL1BhZ2UKL1Jlc291cmNlcyA8PAovRm9udCA8PAovRjEgNSAwIFIKPj4KPj4KL01lZGlhQm94IFsgMC4wIDAu
MCA2MTIgNzkyIF0KL1BhcmVudCAyIDAgUgovQ29udGVudHMgNiAwIFIKPj4KZW5kb2JqCjUgMCBvYmoKPDwKL1R5cGUgL0ZvbnQK
L1N1YnR5cGUgL1R5cGUxCi9CYXNlRm9udCAvSGVsdmV0aWNhCj4+CmVuZG9iago2IDAgb2JqCjw8Ci9MZW5ndGggMTEyCj4+CnN0
cmVhbQpqPQ7GpYAi0ohp0VXQMGNS9zaht8RrwtLHRxFThBzxySBKI9XW671NEH7nC9zhuyJKpd8/R9CJqXD76pyWqI+7tumiOClZ
dHQXLafUSEBmrbUo5XKVdrNf7NKqLZfoXv/ntPZ1Td9iPsPQq3kpZC/JCmVuZHN0cmVhbQplbmRvYmoKNyAwIG9iago8PAovViA1
Ci9SIDYKL0xlbmd0aCAyNTYKL1AgNAovRmlsdGVyIC9TdGFuZGFyZAovTyA8MjdjNTQ0YzlkODgyOWE1ZDc4M2FlM2ExYTk0M2Y0
ZDM4OWFkMGVhYmM4YThhZjEwNTE4YTBiYmZlNGM2N2YxZmFhMTYyZmQwMjI3ZjFmM2E2ZGJkNGI3ZTNkZTM2YTE5PgovVSA8ZjBj
YTdiY2Y3NThmYTEwNTk4MGFmZjJkMGUyMjViODlmMGMwNjA5N2RhMTQwNDI1MmVlYTdiYTQ0OTM0MzE3NzFjZDVlNDU0OTZjMTNm
MTEzZmZkZDY5ZjE1NjYyZTRkPgovQ0YgPDwKL1N0ZENGIDw8Ci9BdXRoRXZlbnQgL0RvY09wZW4KL0NGTSAvQUVTVjMKL0xlbmd0
aCAzMgo+Pgo+PgovU3RtRiAvU3RkQ0YKL1N0ckYgL1N0ZENGCi9PRSA8NDdkOWRiZWNiNjYzYzFiNGFmN2RmMGJjZmZjYjQwY2Vl
MTEyYjJkNjNlYTUyMjA3Njk2NDIyMTY3NTRjNDcyYj4KL1VFIDw5Y2RiZTkyMzM5Y2U5YmRiNzJkY2Y2MDU2ODVmZTIzYzNkNDhk
OGY5OGFjZTU5YjZjZjM0OTc2NjAwOTViYmMzPgovUGVybXMgPDM1MjIwYjU1ODY1NWIxNzI4OWRmN2MyNjhkOGQwYWM1Pgo+Pgpl
bmRvYmoKeHJlZgowIDgKMDAwMDAwMDAwMCA2NTUzNSBmIAowMDAwMDAwMDE1IDAwMDAwIG4gCjAwMDAwMDAxODcgMDAwMDAgbiAK
MDAwMDAwMDI0NiAwMDAwMCBuIAowMDAwMDAwMjk1IDAwMDAwIG4gCjAwMDAwMDA0MjcgMDAwMDAgbiAKMDAwMDAwMDQ5NyAwMDAw
MCBuIAowMDAwMDAwNjYwIDAwMDAwIG4gCnRyYWlsZXIKPDwKL1NpemUgOAovUm9vdCAzIDAgUgovSW5mbyAxIDAgUgovSUQgWyA8
Njg4NTZlY2ZjYzE1ZjFjZWYwZWZkYjJlMWFiYjg2MGI+IDw2ODg1NmVjZmNjMTVmMWNlZjBlZmRiMmUxYWJiODYwYj4gXQovRW5j
cnlwdCA3IDAgUgo+PgpzdGFydHhyZWYKMTIwNgolJUVPRgo=""")

HUB_RESET = """Use these steps when the hub stops responding.

```bash
# Stop the hub service first
nimbusctl stop
# Factory reset wipes every paired device
nimbusctl reset --factory
```

After the reset, pair each device again from the app.
"""

RETURNS_PAGE = """<html><head><title>Returns policy</title></head><body>
<h1>Returns policy</h1>
<div class="article-body">
  You can return any device within 30 days of delivery.<br>
  Refunds go back to the original payment method within 5 working days.
</div>
<h2>Damaged parcels</h2>
<section>Tell us within 48 hours and keep the packaging for the carrier.</section>
<dl><dt>Restocking fee</dt><dd>None for faulty devices; 10% otherwise.</dd></dl>
<blockquote>Gift returns are refunded as store credit.</blockquote>
<ul><li><p>Print the label from Account &gt; Orders.</p></li></ul>
</body></html>"""


def refusal(name: str, data: bytes) -> str:
    with pytest.raises(IngestError) as err:
        load_bytes(name, data)
    assert err.value.source == name
    return err.value.reason


# -- Markdown ---------------------------------------------------------------------------------

def test_a_comment_in_a_fenced_code_block_is_code_not_a_heading():
    doc = load_bytes("hub-reset.md", HUB_RESET.encode())
    assert doc.title == "Hub reset"
    assert [(s.heading, s.text) for s in doc.sections] == [("", HUB_RESET.strip())]
    assert [c.text for c in chunk_document(doc)] == [HUB_RESET.strip()]


def test_only_top_level_headings_start_sections():
    text = (
        "# Pairing\n\nIntro.\n\n    # indented code\n\n> # a quoted heading\n\n- item\n\n  # heading in a list\n\n"
        "~~~python\n## not a heading either\n~~~\n\nSetext section\n--------------\n\nBody.\n"
    )
    doc = load_bytes("pairing.md", text.encode())
    assert doc.title == "Pairing"
    assert [s.heading for s in doc.sections] == ["", "Setext section"]
    assert doc.sections[0].text == (
        "Intro.\n\n    # indented code\n\n> # a quoted heading\n\n- item\n\n  # heading in a list\n\n"
        "~~~python\n## not a heading either\n~~~"
    )
    assert doc.sections[1].text == "Body."


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_markdown_reads_the_same_whatever_the_line_endings(ending):
    text = "---\ncategory: devices\ntitle: Ignored when there is a heading\n---\n# Hub reset\n" + HUB_RESET
    doc = load_bytes("hub.md", text.replace("\n", ending).encode())
    assert (doc.title, doc.category) == ("Hub reset", "devices")
    assert [(s.heading, s.text) for s in doc.sections] == [("", HUB_RESET.strip())]


def test_front_matter_is_yaml_and_may_give_the_title():
    doc = load_bytes("x.md", b"---\ntitle: 'Hub: reset'\ncategory: \"devices\" # quoted\n---\nSteps.\n")
    assert (doc.title, doc.category, doc.text) == ("Hub: reset", "devices", "Steps.")
    # Not closed, or not a mapping: not front matter, and nothing of it is lost.
    assert load_bytes("rule.md", b"---\nIntro: text\n\n## Part\nBody.\n").sections[0].text == "---\nIntro: text"
    doc = load_bytes("note.md", b"---\nJust a note\n---\nBody.\n")
    assert [(s.heading, s.text) for s in doc.sections] == [("", "---"), ("Just a note", "Body.")]


def test_front_matter_that_is_not_valid_yaml_is_refused_with_its_line():
    reason = refusal("bad.md", b"---\ncategory: devices\ntags: [hub\n---\n# Hub\nBody.\n")
    assert reason == "front matter is not valid YAML (line 3: expected ',' or ']', but got '<stream end>')"


def test_a_section_that_starts_with_indented_code_keeps_its_indentation():
    doc = load_bytes("x.md", b"# Hub\n\n    nimbusctl stop\n    nimbusctl start\n\nDone.\n")
    assert doc.sections[0].text == "    nimbusctl stop\n    nimbusctl start\n\nDone."


def test_heading_words_lose_their_markup():
    doc = load_bytes("x.md", b"# Reset **your** `hub`\n\n## Step *one* ##\nGo.\n")
    assert (doc.title, doc.sections[0].heading) == ("Reset your hub", "Step one")


# -- HTML -------------------------------------------------------------------------------------

def test_every_visible_html_text_is_kept_exactly_once():
    doc = load_bytes("returns.html", RETURNS_PAGE.encode())
    assert doc.title == "Returns policy"
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("", "You can return any device within 30 days of delivery.\n"
             "Refunds go back to the original payment method within 5 working days."),
        ("Damaged parcels", "Tell us within 48 hours and keep the packaging for the carrier.\n"
                            "Restocking fee\nNone for faulty devices; 10% otherwise.\n"
                            "Gift returns are refunded as store credit.\n"
                            "- Print the label from Account > Orders."),
    ]


def test_html_tables_lists_and_inline_text_are_laid_out_by_line():
    page = (
        "<body>Loose text <b>in</b> the body<span>, joined</span>."
        "<table><tr><th>Plan</th><th>Price</th></tr><tr><td>Basic</td><td><p>3 EUR</p></td></tr></table>"
        "<ol><li>Open <a href='#'>Settings</a><ul><li>Tap Hub</li></ul></li><li>Reset</li></ol>"
        "<table><tr><td>Two</td><td>lines<br>in a cell</td></tr></table>"
        "<h5>Small print</h5><pre>  keep\n    this   spacing</pre>"
        "<script>var hidden = 1;</script><style>p { color: red }</style><!-- a comment -->"
        "<div hidden>not shown</div><p style='display: none'>not shown</p><noscript>no script</noscript>"
        "<nav>Home | Help</nav><footer>Call 0800 123 456</footer></body>"
    )
    doc = load_bytes("plans.html", page.encode())
    assert doc.title == "Plans"
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("", "Loose text in the body, joined.\nPlan | Price\nBasic | 3 EUR\n1. Open Settings\n  - Tap Hub\n2. Reset\n"
             "Two | lines in a cell"),
        ("Small print", "  keep\n    this   spacing\nCall 0800 123 456"),
    ]


def test_html_headings_nest_like_markdown_ones():
    page = b"<h1>Guide</h1><p>Intro.</p><h2>Set up</h2><p>A.</p><h3>Wi-Fi</h3><p>B.</p><h2>Use</h2><p>C.</p>"
    doc = load_bytes("guide.htm", page)
    assert doc.title == "Guide"
    assert [s.heading for s in doc.sections] == ["", "Set up", "Set up > Wi-Fi", "Use"]


# -- JSON Lines -------------------------------------------------------------------------------

def test_jsonl_lines_end_at_newline_only():
    separators = "\u2028\u2029\u0085\x0b\x0c\x1c"
    rows = [{"question": "How long do refunds take?", "answer": f"5 to 7 working days.{separators}Bank transfers: 10."},
            {"question": "Can I change my address?", "answer": "Yes, before the order ships."}]
    data = "\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode() + b"\r\n\r\n"
    doc = load_bytes("faq.jsonl", data)
    assert [s.text for s in doc.sections] == [
        f"Q: How long do refunds take?\nA: 5 to 7 working days.{separators}Bank transfers: 10.",
        "Q: Can I change my address?\nA: Yes, before the order ships.",
    ]


def test_jsonl_problems_are_refused_with_their_line_numbers():
    good = '{"question": "Q1", "answer": "A1"}'
    # U+2028 is not JSON whitespace: outside a string it is an error, on the line it is on.
    assert refusal("faq.jsonl", f"{good}\n\n{{\"question\": \"Q2\"\u2028}}\n".encode()) == \
        "line 3 is not valid JSON (Expecting ',' delimiter)"
    assert refusal("faq.jsonl", f'{good}\n\n{{"question": "Q2"}}\n{{"title": "x"}}\n'.encode()) == \
        "line 3 has a question but no answer; line 4 has a question but no answer"
    assert refusal("faq.jsonl", f'{good}\n{{"other": 1}}\n'.encode()) == "line 2 has neither a question nor an answer"
    assert refusal("faq.jsonl", f'{good}\n[1, 2]\n'.encode()) == "line 2 is not a JSON object"


# -- FAQ CSV ----------------------------------------------------------------------------------

def test_csv_follows_rfc_4180_quoting():
    data = (b'question,answer,category\r\n"Can I pause, and for how long?","Yes, for up to\r\n3 months.",billing\r\n'
            b'"Is there ""VAT""?",It is included.,billing\r\n,,\r\n')
    doc = load_bytes("faq.csv", data)
    assert doc.category == "billing"
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("Can I pause, and for how long?", "Q: Can I pause, and for how long?\nA: Yes, for up to\n3 months."),
        ('Is there "VAT"?', 'Q: Is there "VAT"?\nA: It is included.'),
    ]


def test_a_csv_row_cut_by_an_unquoted_comma_is_refused_with_its_line():
    data = b'question,answer\n"Multi\nline?",Yes.\nCan I pause?,Yes, for 3 months.\nIs there VAT?,It is included.\n'
    assert refusal("faq.csv", data) == \
        "line 4 has 3 fields but the header has 2 (put a value that contains a comma in double quotes)"


def test_other_csv_problems_are_refused_with_their_lines():
    assert refusal("faq.csv", b"question,answer\nQ1,A1\nQ2\nQ3,\n") == (
        "line 3 has 1 fields but the header has 2 (put a value that contains a comma in double quotes); "
        "line 4 has a question but no answer")
    assert refusal("faq.csv", b'question,answer\nQ1,"A1\n') == "line 2: a quoted value is never closed"
    assert refusal("faq.csv", b'question,answer\nQ1,"A1"x\n').startswith("line 2: not valid CSV (")
    many = b"question,answer\n" + b"".join(b"Q,A,%d\n" % n for n in range(8))
    assert refusal("faq.csv", many).endswith("line 6 has 3 fields but the header has 2 "
                                             "(put a value that contains a comma in double quotes); and 3 more")
    # Trailing empty fields (a spreadsheet's export) lose nothing.
    assert len(load_bytes("faq.csv", b"question,answer\nQ1,A1,,\n").sections) == 1


# -- encodings --------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding, bom", [
    ("utf-8", codecs.BOM_UTF8), ("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE),
    ("utf-32-le", codecs.BOM_UTF32_LE), ("utf-32-be", codecs.BOM_UTF32_BE),
    ("utf-16-le", b""), ("utf-16-be", b""), ("utf-32-le", b""),
])
@pytest.mark.parametrize("name, text, expected", [
    ("notes.txt", "Café opens at 9 € — naïve ✓", "Café opens at 9 € — naïve ✓"),
    ("faq.csv", "question,answer\r\nCafé?,Ja — 9 €\r\n", "Q: Café?\nA: Ja — 9 €"),
    ("faq.jsonl", '{"q": "Café?", "a": "Ja — 9 €"}\n', "Q: Café?\nA: Ja — 9 €"),
    ("page.md", "# Café\n\nJa — 9 €\n", "Ja — 9 €"),
    ("page.html", "<p>Ja — 9 €</p>", "Ja — 9 €"),
])
def test_text_files_load_in_any_unicode_encoding(encoding, bom, name, text, expected):
    assert load_bytes(name, bom + text.encode(encoding)).text == expected


def test_text_that_is_not_unicode_or_not_text_is_refused():
    assert refusal("latin.txt", "caf\u00e9 ok".encode("latin-1")) == (
        "is not UTF-8 text (bad byte at offset 3); save it as UTF-8, or as UTF-16 or UTF-32 with a byte-order mark")
    assert refusal("notes.txt", b"\x00\x01binary") == "looks like a binary file, not text"
    assert refusal("notes.txt", b"text\x00more") == "looks like a binary file, not text"
    assert refusal("bom.md", codecs.BOM_UTF16_LE) == "is empty"


# -- PDF --------------------------------------------------------------------------------------

def test_a_permissions_only_encrypted_pdf_loads():
    doc = load_bytes("refund-policy.pdf", AES_PERMISSIONS_ONLY_PDF)
    assert (doc.title, doc.text) == ("Refund policy", "Refunds reach your card within 5 to 7 working days.")


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-128", "AES-256"])
def test_encrypted_pdfs_open_with_the_empty_password_and_else_are_refused(algorithm):
    from pypdf import PdfReader, PdfWriter

    def encrypted(user_password: str) -> bytes:
        writer = PdfWriter(clone_from=PdfReader(io.BytesIO(minimal_pdf("Refunds take ten days"))))
        writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm=algorithm)
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    assert load_bytes("guide.pdf", encrypted("")).text == "Refunds take ten days"
    assert refusal("locked.pdf", encrypted("open-sesame")) == \
        "is protected by a password; save an unprotected copy and upload that"


def test_pdf_text_keeps_only_what_can_be_stored():
    # A NUL from a PDF's string (octal \\000) is dropped, not stored.
    assert load_bytes("guide.pdf", minimal_pdf("Refunds\\000 take ten days")).text == "Refunds take ten days"


# -- names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, clean", [
    ("refunds.md", "refunds.md"),
    ("basic/cancellation.md", "basic/cancellation.md"),
    ("../../etc/x.md", "etc/x.md"),
    ("/abs/path/x.md", "abs/path/x.md"),
    ("C:\\Users\\me\\x.md", "Users/me/x.md"),
    ("nul\x00byte.md", "nulbyte.md"),
    ("line\nbreak\r\t.md", "line break .md"),
    ("evil\u202etxt.md", "eviltxt.md"),
    ("bad\udcffbyte.md", "bad\ufffdbyte.md"),
    ("../..", "unnamed"),
    ("x" * 300 + ".md", "x" * 196 + "….md"),
])
def test_names_are_cleaned_for_display_and_storage(raw, clean):
    assert clean_name(raw) == clean and clean_name(clean) == clean


def test_a_hostile_name_is_stored_clean_and_refused_clean():
    assert load_bytes("../../\x00notes.txt", b"Hello.").source == "notes.txt"
    with pytest.raises(IngestError) as err:
        load_bytes("../\x1b[31mevil.exe", b"MZ")
    assert (err.value.source, err.value.reason) == ("[31mevil.exe", "unsupported file type .exe; use one of "
                                                    ".md, .markdown, .txt, .pdf, .html, .htm, .csv, .jsonl")
