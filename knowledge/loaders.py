"""Turn uploaded files into Documents: markdown, text, PDF, HTML and FAQ CSV/JSONL.

Every refusal is an IngestError that names the file (by its clean display name) and says why.
"""

from __future__ import annotations

import codecs
import io
import json
import re
import unicodedata
from pathlib import Path, PurePosixPath

from common.errors import IngestError
from knowledge.faq import load_faq_csv, load_faq_jsonl
from knowledge.markup import load_html, load_markdown, title_from_name
from knowledge.types import Document, Section

SUPPORTED = (".md", ".markdown", ".txt", ".pdf", ".html", ".htm", ".csv", ".jsonl")
MAX_FILE_BYTES = 50 * 1024 * 1024
# A display name longer than this keeps its start and its end (with the extension).
MAX_NAME_CHARS = 200
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
# Characters that are never part of a readable name: controls, format characters (bidi
# overrides, zero-width marks), line and paragraph separators.
_INVISIBLE = {"Cc", "Cf", "Zl", "Zp"}
_SURROGATE = re.compile("[\ud800-\udfff]")


def visible(text: str) -> str:
    """`text` without invisible characters: each run of white space becomes one space, a
    character a file system could not decode becomes U+FFFD."""
    kept = "".join(
        "\ufffd" if unicodedata.category(ch) == "Cs" else " " if ch.isspace() else ch
        for ch in str(text) if ch.isspace() or unicodedata.category(ch) not in _INVISIBLE
    )
    return " ".join(kept.split())


def clean_name(raw: str) -> str:
    """A safe display name for an uploaded or found file: a relative path of visible characters,
    without "..", "." or drive letters. Applying it twice changes nothing."""
    parts = []
    for part in str(raw).replace("\\", "/").split("/"):
        kept = visible(part)
        if kept in ("", ".", "..") or (not parts and len(kept) == 2 and kept[1] == ":"):
            continue
        parts.append(kept)
    name = "/".join(parts) or "unnamed"
    if len(name) > MAX_NAME_CHARS:
        suffix = PurePosixPath(name).suffix[:20]
        name = name[: MAX_NAME_CHARS - len(suffix) - 1] + "…" + suffix
    return name


def load_path(path: str | Path, name: str | None = None) -> Document:
    """Load a file from disk, as `name` (its file name unless given)."""
    path = Path(path)
    name = clean_name(name if name is not None else path.name)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(name, f"cannot be read ({exc.strerror})") from exc
    return load_bytes(name, data)


def load_bytes(name: str, data: bytes) -> Document:
    """Load an uploaded file from its name and bytes; raises IngestError with the reason."""
    name = clean_name(name)
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in SUPPORTED:
        raise IngestError(name, f"unsupported file type {suffix or '(none)'}; use one of {', '.join(SUPPORTED)}")
    if len(data) > MAX_FILE_BYTES:
        raise IngestError(name, f"is {len(data) / 1e6:.0f} MB; the limit is {MAX_FILE_BYTES / 1e6:.0f} MB")
    if not data.strip() or data in _BOMS:
        raise IngestError(name, "is empty")
    if suffix == ".pdf":
        doc = _load_pdf(name, data)
    else:
        text = decode_text(name, data)
        if suffix == ".jsonl":  # JSON Lines end at "\n" only
            doc = load_faq_jsonl(name, text)
        else:
            # CommonMark, HTML and RFC 4180 all take "\r\n", "\r" and "\n" as line endings.
            text = text.replace("\r\n", "\n").replace("\r", "\n")
            if suffix in (".md", ".markdown"):
                doc = load_markdown(name, text)
            elif suffix in (".html", ".htm"):
                doc = load_html(name, text)
            elif suffix == ".csv":
                doc = load_faq_csv(name, text)
            else:
                text = text.strip()
                doc = Document(source=name, title=title_from_name(name),
                               sections=[Section(heading="", text=text)] if text else [])
    doc.size_bytes = len(data)
    if not doc.text.strip():
        raise IngestError(name, "contains no text")
    return doc


def decode_text(name: str, data: bytes) -> str:
    """Text in any Unicode encoding: UTF-8 (with or without a byte-order mark), or UTF-16 or UTF-32
    (with a byte-order mark, or without one when the text starts with an ASCII character)."""
    # json.detect_encoding reads the byte-order mark, else the pattern of zero bytes that an
    # ASCII first character leaves in UTF-16 and UTF-32 (RFC 4627, section 3).
    encoding = json.detect_encoding(data[:4])
    guessed = encoding in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        if b"\x00" in data[:8192]:
            raise IngestError(name, "looks like a binary file, not text") from exc
        label = "UTF-8" if encoding.startswith("utf-8") else encoding.upper()
        raise IngestError(
            name, f"is not {label} text (bad byte at offset {exc.start}); save it as UTF-8, "
                  "or as UTF-16 or UTF-32 with a byte-order mark",
        ) from exc
    # A NUL (or, for an encoding guessed from zero bytes, any control character but line and
    # tab breaks) means a binary file with a text extension.
    if "\x00" in text or (guessed and any(unicodedata.category(c) == "Cc" and c not in "\t\n\r\f" for c in text)):
        raise IngestError(name, "looks like a binary file, not text")
    return text


def _load_pdf(name: str, data: bytes) -> Document:
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError

    page = 0
    try:
        reader = PdfReader(io.BytesIO(data))
        # An empty open password (a permissions-only PDF) is what every viewer tries first.
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise IngestError(name, "is protected by a password; save an unprotected copy and upload that")
        title = str(reader.metadata.title) if reader.metadata and reader.metadata.title else ""
        pages = []
        for page, item in enumerate(reader.pages, 1):
            pages.append(item.extract_text() or "")
    except IngestError:
        raise
    except DependencyError as exc:
        raise IngestError(name, f"needs a PDF feature this installation lacks ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - pypdf raises many kinds (ValueError, KeyError, zlib.error...)
        where = f"page {page} " if page else ""
        raise IngestError(name, f"is not a readable PDF ({where}{type(exc).__name__}: {exc})") from exc
    pages, title = [_storable(t) for t in pages], _storable(title)
    sections = [Section(heading=f"Page {i}", text=t.strip()) for i, t in enumerate(pages, 1) if t.strip()]
    return Document(source=name, title=title.strip() or title_from_name(name), sections=sections)


def _storable(text: str) -> str:
    """Text extracted through a PDF's font tables may hold NULs or lone surrogates, which neither
    UTF-8 nor the stores can keep: NULs go, a lone surrogate becomes U+FFFD."""
    return _SURROGATE.sub("\ufffd", text.replace("\x00", ""))
