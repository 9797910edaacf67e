"""Reading training data: chat JSONL, instruction/response tables (CSV, JSONL) and stored
conversations, each record checked and every problem reported by line (`Issue`)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from common.errors import DatasetError
from common.jsonl import json_lines
from common.redaction import redact

ROLES = ("system", "user", "assistant")
SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data"
SAMPLE_CHAT = SAMPLE_DIR / "nimbus_home_support.jsonl"
SAMPLE_PAIRS = SAMPLE_DIR / "nimbus_home_pairs.csv"
# A subset of Bitext's customer-support sample (CDLA-Sharing-1.0; see bitext-support.README.md).
SAMPLE_BITEXT = SAMPLE_DIR / "bitext-support.csv"

Source = str | Path | bytes


@dataclass
class Issue:
    """One problem found in a dataset, located by line (files) or record (conversations)."""

    message: str
    line: int | None = None
    field: str | None = None
    level: str = "error"
    record: str | None = None

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.record:
            where.append(self.record)
        if self.field:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message


@dataclass
class LoadResult:
    """Examples read from one source, and every problem met on the way."""

    source: str
    examples: list[dict[str, Any]] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    records: int = 0

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "warning"]

    def raise_for_errors(self, limit: int = 5) -> None:
        """Raise DatasetError naming the first problems, if any record was rejected."""
        errors = self.errors
        if not errors:
            return
        shown = "; ".join(str(e) for e in errors[:limit])
        more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
        raise DatasetError(f"{self.source}: {shown}{more}", line=errors[0].line, field=errors[0].field)


# ---- reading ----------------------------------------------------------------------------------


def _is_path(source: Source) -> bool:
    if isinstance(source, Path):
        return True
    # A one-line string is a path when such a file exists; anything else is the text itself.
    return isinstance(source, str) and "\n" not in source and len(source) < 1024 and Path(source).is_file()


def source_text(source: Source, name: str) -> str:
    if _is_path(source):
        try:
            raw = Path(source).read_bytes()
        except OSError as exc:
            raise DatasetError(f"{name}: cannot read the file ({exc.strerror})") from exc
    elif isinstance(source, bytes):
        raw = source
    else:
        return source
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DatasetError(f"{name}: line {line} is not UTF-8 text; save the file as UTF-8", line=line) from exc


def _name(source: Source, name: str | None) -> str:
    if name:
        return name
    if _is_path(source):
        return Path(source).name
    return "dataset"


def _check_messages(messages: Any, issues: list[Issue], line: int | None, record: str | None) -> list[dict] | None:
    """Clean messages, or None after recording why the record cannot be used."""

    def bad(message: str, where: str) -> None:
        issues.append(Issue(message, line=line, field=where, record=record))

    if not isinstance(messages, list) or not messages:
        bad("must be a non-empty list of {role, content} turns", "messages")
        return None
    clean: list[dict] = []
    for i, turn in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(turn, dict):
            bad("each turn must be an object with role and content", where)
            return None
        if "role" not in turn:
            bad("missing field", f"{where}.role")
            return None
        if "content" not in turn:
            bad("missing field", f"{where}.content")
            return None
        role, content = turn["role"], turn["content"]
        if role not in ROLES:
            bad(f"role must be one of {', '.join(ROLES)} (got {role!r})", f"{where}.role")
            return None
        if not isinstance(content, str):
            bad("content must be text", f"{where}.content")
            return None
        if not content.strip():
            bad("empty turn", f"{where}.content")
            return None
        clean.append({"role": role, "content": content.strip(), **({"approved": turn["approved"]}
                                                                     if "approved" in turn else {})})
    return clean


def _expand(messages: list[dict], issues: list[Issue], line: int | None, record: str | None,
            keep=lambda m: True) -> list[dict[str, Any]]:
    """One example per kept assistant turn, with everything before it as the prompt."""
    examples = []
    for i, turn in enumerate(messages):
        if turn["role"] != "assistant" or not keep(turn):
            continue
        prompt = [{"role": m["role"], "content": m["content"]} for m in messages[:i]]
        if not any(m["role"] == "user" for m in prompt):
            issues.append(Issue("assistant reply with no customer message before it", line=line,
                                field=f"messages[{i}]", record=record))
            continue
        examples.append({"prompt": prompt, "completion": [{"role": "assistant", "content": turn["content"]}],
                         "origin": f"line {line}" if line is not None else (record or "")})
    return examples


def load_chat_jsonl(source: Source, name: str | None = None) -> LoadResult:
    """Read {"messages": [...]} lines; each assistant turn becomes an example with its context."""
    name = _name(source, name)
    result = LoadResult(source=name)
    for number, raw_line in json_lines(source_text(source, name)):
        result.records += 1
        try:
            record = json.loads(raw_line)
        except json.JSONDecodeError as exc:
            result.issues.append(Issue(f"not valid JSON ({exc.msg} at column {exc.colno})", line=number))
            continue
        if not isinstance(record, dict):
            result.issues.append(Issue('each line must be an object like {"messages": [...]}', line=number))
            continue
        if "messages" not in record:
            result.issues.append(Issue("missing field", line=number, field="messages"))
            continue
        messages = _check_messages(record["messages"], result.issues, number, None)
        if messages is None:
            continue
        found = _expand(messages, result.issues, number, None)
        if not found and not any(m["role"] == "assistant" for m in messages):
            result.issues.append(Issue("no assistant reply to learn from", line=number, field="messages"))
        result.examples.extend(found)
    if result.records == 0:
        raise DatasetError(f"{name}: the file has no rows")
    return result


def read_table(source: Source, kind: str, name: str | None = None) -> tuple[list[str], list[tuple[int, dict]]]:
    """Columns and (line, row) pairs of a CSV or JSONL table, for choosing a column mapping."""
    name = _name(source, name)
    text = source_text(source, name)
    rows: list[tuple[int, dict]] = []
    if kind == "csv":
        reader = csv.DictReader(io.StringIO(text))
        columns = [c for c in (reader.fieldnames or []) if c]
        if not columns:
            if not text.strip():
                raise DatasetError(f"{name}: the file has no rows")
            raise DatasetError(f"{name}: the CSV has no header row", line=1)
        try:
            for row in reader:
                rows.append((reader.line_num, row))
        except csv.Error as exc:
            raise DatasetError(f"{name}: line {reader.line_num}: {exc}", line=reader.line_num) from exc
        if not rows:
            raise DatasetError(f"{name}: the file has no rows")
        return columns, rows
    if kind != "jsonl":
        raise DatasetError(f"{name}: unknown table format {kind!r}; use csv or jsonl")
    columns: list[str] = []
    for number, raw_line in json_lines(text):
        try:
            row = json.loads(raw_line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{name}: line {number}: not valid JSON ({exc.msg} at column {exc.colno})",
                               line=number) from exc
        if not isinstance(row, dict):
            raise DatasetError(f"{name}: line {number}: each line must be a JSON object", line=number)
        columns.extend(k for k in row if k not in columns)
        rows.append((number, row))
    if not rows:
        raise DatasetError(f"{name}: the file has no rows")
    return columns, rows


def load_pairs(source: Source, kind: str, instruction: str, response: str, input_column: str | None = None,
               system_column: str | None = None, name: str | None = None) -> LoadResult:
    """Instruction/response rows mapped to single-turn examples, by the chosen columns."""
    name = _name(source, name)
    columns, rows = read_table(source, kind, name)
    for role, column in (("instruction", instruction), ("response", response), ("input", input_column),
                         ("system", system_column)):
        if column and column not in columns:
            raise DatasetError(f"{name}: the {role} column {column!r} is not in the file "
                               f"(columns: {', '.join(columns)})", field=column)
    result = LoadResult(source=name, records=len(rows))
    for line, row in rows:
        values = {}
        for column in filter(None, (instruction, response, input_column, system_column)):
            value = row.get(column)
            values[column] = "" if value is None else str(value).strip()
        missing = [c for c in (instruction, response) if not values[c]]
        if missing:
            for column in missing:
                result.issues.append(Issue("empty or missing value", line=line, field=column))
            continue
        prompt = []
        if system_column and values.get(system_column):
            prompt.append({"role": "system", "content": values[system_column]})
        user = values[instruction]
        if input_column and values.get(input_column):
            user = f"{user}\n\n{values[input_column]}"
        prompt.append({"role": "user", "content": user})
        result.examples.append({"prompt": prompt, "completion": [{"role": "assistant", "content": values[response]}],
                                "origin": f"line {line}"})
    return result


def load_bitext(path: Source = SAMPLE_BITEXT, name: str | None = None) -> LoadResult:
    """The shipped Bitext support requests (or a CSV with the same columns): instruction -> response."""
    return load_pairs(path, "csv", "instruction", "response", name=name)


def from_conversations(conversations: Iterable[dict[str, Any]], name: str = "stored conversations") -> LoadResult:
    """Examples from the app's conversations: agent-approved assistant replies with their context."""
    result = LoadResult(source=name)
    for conversation in conversations:
        result.records += 1
        record = f"conversation {conversation.get('id', result.records)}"
        raw = conversation.get("messages")
        if isinstance(raw, list):
            # The app's own log may hold notices or turns cut off by an error: skip those, keep the rest.
            usable = [m for m in raw if isinstance(m, dict) and m.get("role") in ROLES
                      and isinstance(m.get("content"), str) and m["content"].strip()]
            # Card numbers, passwords and tokens never become training data, whenever they were stored.
            usable = [{**m, "content": redact(m["content"])} for m in usable]
            if len(usable) < len(raw):
                result.issues.append(Issue(f"{len(raw) - len(usable)} empty or non-chat turn(s) skipped",
                                           record=record, level="warning"))
            raw = usable
        messages = _check_messages(raw, result.issues, None, record)
        if messages is None:
            continue
        result.examples.extend(_expand(messages, result.issues, None, record,
                                       keep=lambda m: m.get("approved") is True))
    return result


# ---- tokens, splitting, writing ---------------------------------------------------------------
