"""Training sets from chat JSONL, instruction/response tables or stored conversations, validated,
measured in tokens, split and written for a job; reading the sources is `training.dataset_loaders`."""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import DatasetError
from common.jsonl import json_lines
# The dataset API is read from this module: loading lives in dataset_loaders, building here.
from training.dataset_loaders import (ROLES, SAMPLE_BITEXT, SAMPLE_CHAT, SAMPLE_DIR, SAMPLE_PAIRS,  # noqa: F401
                                      Issue, LoadResult, Source, from_conversations, load_bitext,
                                      load_chat_jsonl, load_pairs, read_table, source_text)
from training.truncation import spans

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
    for number, raw_line in json_lines(source_text(Path(path), name)):
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
