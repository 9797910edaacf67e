"""Turn uploaded files into Documents: markdown, text, PDF, HTML and FAQ CSV/JSONL."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from common.errors import IngestError
from knowledge.types import Document, Section

SUPPORTED = (".md", ".markdown", ".txt", ".pdf", ".html", ".htm", ".csv", ".jsonl")
MAX_FILE_BYTES = 50 * 1024 * 1024
QUESTION_KEYS = ("question", "q", "title", "prompt")
ANSWER_KEYS = ("answer", "a", "response", "body")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)
# Navigation lists of other articles' titles match many queries and answer none.
_NAVIGATION = re.compile(r"^(related( articles| topics)?|see also|more help)$", re.I)


def load_path(path: str | Path) -> Document:
    """Load a file from disk."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(path.name, f"cannot be read ({exc.strerror})") from exc
    return load_bytes(path.name, data)


def load_bytes(name: str, data: bytes) -> Document:
    """Load an uploaded file from its name and bytes; raises IngestError with the reason."""
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED:
        raise IngestError(name, f"unsupported file type {suffix or '(none)'}; use one of {', '.join(SUPPORTED)}")
    if len(data) > MAX_FILE_BYTES:
        raise IngestError(name, f"is {len(data) / 1e6:.0f} MB; the limit is {MAX_FILE_BYTES / 1e6:.0f} MB")
    if not data.strip():
        raise IngestError(name, "is empty")
    if suffix == ".pdf":
        doc = _load_pdf(name, data)
    else:
        text = _decode(name, data)
        if suffix in (".md", ".markdown"):
            doc = _load_markdown(name, text)
        elif suffix in (".html", ".htm"):
            doc = _load_html(name, text)
        elif suffix == ".csv":
            doc = _load_faq(name, list(csv.DictReader(io.StringIO(text))))
        elif suffix == ".jsonl":
            doc = _load_faq(name, _jsonl_rows(name, text))
        else:
            doc = Document(source=name, title=_title_from_name(name), sections=_paragraph_sections(text, ""))
    doc.size_bytes = len(data)
    if not doc.text.strip():
        raise IngestError(name, "contains no text")
    return doc


def _decode(name: str, data: bytes) -> str:
    # A NUL byte or undecodable bytes mean a binary file with a text extension.
    if b"\x00" in data[:8192]:
        raise IngestError(name, "looks like a binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(name, f"is not UTF-8 text (bad byte at offset {exc.start})") from exc


def _title_from_name(name: str) -> str:
    return Path(name).stem.replace("-", " ").replace("_", " ").strip().capitalize()


def _paragraph_sections(text: str, heading: str) -> list[Section]:
    text = text.strip()
    return [Section(heading=heading, text=text)] if text else []


def _load_markdown(name: str, text: str) -> Document:
    category = ""
    match = _FRONT_MATTER.match(text)
    if match:
        for line in match.group(1).splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == "category":
                category = value.strip().strip("'\"")
        text = text[match.end():]
    title = ""
    path: list[str] = []
    sections: list[Section] = []
    lines: list[str] = []

    def flush() -> None:
        body = "\n".join(lines).strip()
        if body and not (path and _NAVIGATION.match(path[-1])):
            sections.append(Section(heading=" > ".join(path), text=body))
        lines.clear()

    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            flush()
            level, words = len(heading.group(1)), heading.group(2).strip()
            if level == 1 and not title:
                title = words
                path = []
                continue
            depth = max(0, level - 2)
            path = path[:depth] + [words]
        else:
            lines.append(line)
    flush()
    return Document(source=name, title=title or _title_from_name(name), sections=sections, category=category)


def _load_html(name: str, text: str) -> Document:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    for tag in soup(["script", "style", "nav", "footer", "header", "noscript"]):
        tag.decompose()
    title_tag = soup.find("title") or soup.find("h1")
    title = title_tag.get_text(" ", strip=True) if title_tag else _title_from_name(name)
    sections: list[Section] = []
    heading, buffer = "", []
    body = soup.body or soup
    for element in body.find_all(["h1", "h2", "h3", "h4", "p", "li", "pre", "td"]):
        words = element.get_text(" ", strip=True)
        if not words:
            continue
        if element.name in ("h1", "h2", "h3", "h4"):
            if buffer:
                sections.append(Section(heading=heading, text="\n".join(buffer)))
                buffer = []
            heading = "" if words == title else words
        else:
            buffer.append(("- " if element.name == "li" else "") + words)
    if buffer:
        sections.append(Section(heading=heading, text="\n".join(buffer)))
    return Document(source=name, title=title, sections=sections)


def _load_pdf(name: str, data: bytes) -> Document:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise IngestError(name, f"is not a readable PDF ({exc})") from exc
    title = ""
    if reader.metadata and reader.metadata.title:
        title = str(reader.metadata.title)
    sections = [Section(heading=f"Page {i}", text=t.strip()) for i, t in enumerate(pages, 1) if t.strip()]
    return Document(source=name, title=title or _title_from_name(name), sections=sections)


def _jsonl_rows(name: str, text: str) -> list[dict]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise IngestError(name, f"line {number} is not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise IngestError(name, f"line {number} is not a JSON object")
        rows.append(row)
    return rows


def _pick(row: dict, keys: tuple[str, ...]) -> str:
    lowered = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    for key in keys:
        value = lowered.get(key)
        if value is not None and str(value).strip():
            return str(value).strip()
    return ""


def _load_faq(name: str, rows: list[dict]) -> Document:
    if not rows:
        raise IngestError(name, "has no rows")
    columns = {str(k).strip().lower() for k in rows[0] if k is not None}
    if not columns & set(QUESTION_KEYS) or not columns & set(ANSWER_KEYS):
        raise IngestError(
            name,
            f"needs a question column ({'/'.join(QUESTION_KEYS)}) and an answer column "
            f"({'/'.join(ANSWER_KEYS)}); found {', '.join(sorted(columns)) or 'none'}",
        )
    sections = []
    for row in rows:
        question, answer = _pick(row, QUESTION_KEYS), _pick(row, ANSWER_KEYS)
        if question and answer:
            # One FAQ entry per section, so a chunk never splits a question from its answer.
            sections.append(Section(heading=question, text=f"Q: {question}\nA: {answer}"))
    category = _pick(rows[0], ("category",))
    return Document(source=name, title=_title_from_name(name), sections=sections, category=category)
