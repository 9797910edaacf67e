"""FAQ files: CSV (RFC 4180) or JSON Lines with a question and an answer per row.

A row that does not parse (a bad quote, more or fewer fields than the header: an unquoted
comma cuts an answer in two) or that has a question without an answer refuses the file,
naming the line, rather than storing a truncated or half entry.
"""

from __future__ import annotations

import csv
import io
import json

from common.errors import IngestError
from common.jsonl import json_lines
from knowledge.markup import title_from_name
from knowledge.types import Document, Section

QUESTION_KEYS = ("question", "q", "title", "prompt")
ANSWER_KEYS = ("answer", "a", "response", "body")
# Problems listed in one refusal; the rest are counted.
MAX_LISTED = 5
# Python's csv refuses fields over 128 KB by default; a file is refused above its own limit anyway.
csv.field_size_limit(max(csv.field_size_limit(), 64 * 1024 * 1024))


def _refuse(name: str, problems: list[str]) -> None:
    if problems:
        more = f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise IngestError(name, "; ".join(problems[:MAX_LISTED]) + more)


def _columns_error(name: str, columns) -> IngestError:
    found = ", ".join(sorted(c for c in columns if c)) or "none"
    return IngestError(
        name,
        f"needs a question column ({'/'.join(QUESTION_KEYS)}) and an answer column "
        f"({'/'.join(ANSWER_KEYS)}); found {found}",
    )


def _pick(row: dict, keys: tuple[str, ...]) -> str | None:
    """The first non-empty value of `keys` in the row, as text: "" if they are all empty, None if it has none."""
    present = None
    for key in keys:
        if key in row:
            value = "" if row[key] is None else str(row[key]).strip()
            if value:
                return " ".join(value.split()) if keys is QUESTION_KEYS else value
            present = ""
    return present


def _document(name: str, entries: list[tuple[int, dict]], problems: list[str]) -> Document:
    """Sections from (line, row) pairs whose keys are lower-cased column names."""
    sections, category = [], ""
    for line, row in entries:
        question, answer = _pick(row, QUESTION_KEYS), _pick(row, ANSWER_KEYS)
        if question is None and answer is None:
            problems.append(f"line {line} has neither a question nor an answer")
            continue
        question, answer = question or "", answer or ""
        if not question and not answer:
            continue  # an empty row
        if not question or not answer:
            problems.append(f"line {line} has {'a question' if question else 'an answer'} but no "
                            f"{'answer' if question else 'question'}")
            continue
        # One FAQ entry per section, so a chunk never splits a question from its answer.
        sections.append(Section(heading=question, text=f"Q: {question}\nA: {answer}"))
        category = category or (_pick(row, ("category",)) or "")
    _refuse(name, problems)
    if not sections:
        raise IngestError(name, "has no rows")
    return Document(source=name, title=title_from_name(name), sections=sections, category=category)


def load_faq_csv(name: str, text: str) -> Document:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    entries: list[tuple[int, dict]] = []
    problems: list[str] = []
    line = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            hint = "a quoted value is never closed" if "end of data" in str(exc) else f"not valid CSV ({exc})"
            problems.append(f"line {line}: {hint}")
            break  # the reader cannot go on after a quoting error
        start, line = line, reader.line_num + 1
        if not any(f.strip() for f in fields):
            continue
        if header is None:
            header = [f.strip().lower() for f in fields]
            if not set(header) & set(QUESTION_KEYS) or not set(header) & set(ANSWER_KEYS):
                raise _columns_error(name, header)
            continue
        extra = fields[len(header):]
        if len(fields) < len(header) or any(f.strip() for f in extra):
            problems.append(f"line {start} has {len(fields)} fields but the header has {len(header)} "
                            f"(put a value that contains a comma in double quotes)")
            continue
        entries.append((start, dict(zip(header, fields))))
    if header is None:
        _refuse(name, problems)
        raise IngestError(name, "has no rows")
    return _document(name, entries, problems)


def load_faq_jsonl(name: str, text: str) -> Document:
    entries: list[tuple[int, dict]] = []
    problems: list[str] = []
    for number, line in json_lines(text):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise IngestError(name, f"line {number} is not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise IngestError(name, f"line {number} is not a JSON object")
        row = {str(k).strip().lower(): v for k, v in row.items()}
        if not entries and not problems and (
                not set(row) & set(QUESTION_KEYS) or not set(row) & set(ANSWER_KEYS)):
            raise _columns_error(name, row)
        nested = [k for k in (*QUESTION_KEYS, *ANSWER_KEYS) if isinstance(row.get(k), (dict, list))]
        if nested:
            problems.append(f"line {number}: \"{nested[0]}\" is not text")
            continue
        entries.append((number, row))
    return _document(name, entries, problems)
