"""Training sets from chat JSONL, instruction/response tables or stored conversations, validated."""

from __future__ import annotations

import csv
import io
import json
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from common.errors import DatasetError
from common.jsonl import json_lines
from common.redaction import redact
from training.truncation import spans

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


@dataclass
class BuiltDataset:
    """A validated dataset split into training and validation examples, with token statistics."""

    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    lengths: list[int]
    stats: dict[str, float]
    issues: list[Issue]
    exact_tokens: bool
    max_seq_length: int = 0
    left_out_for_length: int = 0  # over the max length: left out by choice or for keeping no reply token
    left_out_no_reply: int = 0  # of those, the ones whose prompt alone fills the max length
    tokens_trained: int = 0  # reply tokens of the training split that survive truncation (one pass)

    def length_message(self) -> str | None:
        """What is left out for length, in a sentence, or None when nothing is."""
        n = self.left_out_for_length
        if not n:
            return None
        text = (f"{n} example{' is' if n == 1 else 's are'} longer than the max length "
                f"({self.max_seq_length} tokens) and will be left out")
        if self.left_out_no_reply == n:
            text += ": the prompt alone fills it, so no reply token would be trained on"
        elif self.left_out_no_reply:
            text += (f"; in {self.left_out_no_reply} of them the prompt alone fills it, so no reply token "
                     "would be trained on")
        return text + "."


# ---- reading ----------------------------------------------------------------------------------


def _is_path(source: Source) -> bool:
    if isinstance(source, Path):
        return True
    # A one-line string is a path when such a file exists; anything else is the text itself.
    return isinstance(source, str) and "\n" not in source and len(source) < 1024 and Path(source).is_file()


def _text(source: Source, name: str) -> str:
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
    for number, raw_line in json_lines(_text(source, name)):
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
    text = _text(source, name)
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


def example_messages(example: dict[str, Any]) -> list[dict[str, str]]:
    """The whole conversation of an example: its prompt then its completion."""
    return list(example["prompt"]) + list(example["completion"])


def token_lengths(examples: list[dict[str, Any]], tokenizer: Any | None) -> list[int]:
    """Tokens per example through the model's chat template, or an estimate without a tokenizer."""
    return [span.total for span in spans(examples, tokenizer)]


def length_stats(lengths: list[int]) -> dict[str, float]:
    """Count, min, median, mean, p95 and max of token lengths."""
    if not lengths:
        return {"count": 0, "min": 0, "median": 0, "mean": 0.0, "p95": 0, "max": 0}
    ordered = sorted(lengths)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {"count": len(ordered), "min": ordered[0], "median": statistics.median(ordered),
            "mean": round(statistics.fmean(ordered), 1), "p95": p95, "max": ordered[-1]}


def split(examples: list[dict[str, Any]], val_fraction: float, seed: int = 42
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Shuffle with a seed and hold out a validation share (at least one when there are two or more)."""
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError("The validation share must be in [0, 1)")
    order = list(examples)
    random.Random(seed).shuffle(order)
    n_val = round(len(order) * val_fraction)
    if val_fraction > 0 and n_val == 0 and len(order) >= 2:
        n_val = 1
    return order[n_val:], order[:n_val]


def build(result: LoadResult, tokenizer: Any | None, max_seq_length: int, val_fraction: float = 0.1,
          seed: int = 42, drop_over_long: bool = True) -> BuiltDataset:
    """Measure, filter over-long examples and split; rejected records stay listed as issues.

    An example whose prompt alone fills `max_seq_length` is always left out: truncation would keep no
    reply token of it, so there would be nothing to learn from.
    """
    issues = list(result.issues)
    kept, kept_lengths, reply_tokens = [], [], {}
    left_out = no_reply = 0
    for example, span in zip(result.examples, spans(result.examples, tokenizer)):
        n, trained = span.total, span.reply_tokens(max_seq_length)
        if n > max_seq_length:
            if not trained:
                no_reply += 1
                action = "its prompt alone fills the limit, so no reply token would be trained on: left out"
            elif drop_over_long:
                action = "left out"
            else:
                action = f"will be truncated ({trained} reply token(s) kept)"
            issues.append(Issue(f"{n} tokens, over the {max_seq_length}-token limit: {action}",
                                record=example.get("origin"), level="warning"))
            if not trained or drop_over_long:
                left_out += 1
                continue
        kept.append(example)
        kept_lengths.append(n)
        reply_tokens[id(example)] = trained
    if not kept:
        raise DatasetError(f"{result.source}: no usable examples"
                           + (f" ({len(result.errors)} record(s) rejected, first: {result.errors[0]})"
                              if result.errors else "")
                           + (f"; {left_out} example(s) are longer than the {max_seq_length}-token max length"
                              if left_out else ""))
    train, validation = split(kept, val_fraction, seed)
    return BuiltDataset(train=train, validation=validation, lengths=kept_lengths,
                        stats=length_stats(kept_lengths), issues=issues, exact_tokens=tokenizer is not None,
                        max_seq_length=max_seq_length, left_out_for_length=left_out, left_out_no_reply=no_reply,
                        tokens_trained=sum(reply_tokens[id(e)] for e in train))


def write_jsonl(examples: list[dict[str, Any]], path: str | Path) -> Path:
    """Write prompt/completion examples, one JSON object per line (the trainer's input)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for example in examples:
            fh.write(json.dumps({"prompt": example["prompt"], "completion": example["completion"]},
                                ensure_ascii=False) + "\n")
    return path


def read_examples(path: str | Path) -> list[dict[str, Any]]:
    """Read a prepared prompt/completion file, refusing malformed lines with their number."""
    examples = []
    name = Path(path).name
    for number, raw_line in json_lines(_text(Path(path), name)):
        try:
            record = json.loads(raw_line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{name}: line {number}: not valid JSON ({exc.msg})", line=number) from exc
        for key in ("prompt", "completion"):
            if not isinstance(record, dict) or not isinstance(record.get(key), list) or not record[key]:
                raise DatasetError(f"{name}: line {number}: missing field '{key}'", line=number, field=key)
        examples.append({"prompt": record["prompt"], "completion": record["completion"]})
    return examples


def preview_rows(examples: list[dict[str, Any]], limit: int = 10) -> list[dict[str, str]]:
    """Rows for a table: where it came from, the last customer message, the reply, the turns."""
    rows = []
    for example in examples[:limit]:
        last_user = next((m["content"] for m in reversed(example["prompt"]) if m["role"] == "user"), "")
        rows.append({"from": example.get("origin", ""), "customer": last_user,
                     "reply": example["completion"][0]["content"], "turns": len(example["prompt"]) + 1})
    return rows
