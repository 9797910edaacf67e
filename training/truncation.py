"""What truncation to the sequence length leaves of each example, measured the way the trainer tokenises it.

The trainer (trl's SFTTrainer) renders an example's prompt with the generation prompt, renders the whole
conversation, and learns only from the reply: the tokens after the two renderings' common prefix. Sequences
are cut from the end at `max_seq_length`. An example whose prompt alone fills that length keeps no reply
token, so it teaches nothing; trl drops it without a word. Here such examples are found before training,
left out, and counted, so the page and the job's metrics say what was really trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backends.local import ensure_chat_template


@dataclass(frozen=True)
class Span:
    """Where an example's reply starts in its token sequence, and how long the sequence is."""

    reply_start: int
    total: int

    def reply_tokens(self, max_seq_length: int) -> int:
        """Reply tokens left to learn from once the sequence is cut to `max_seq_length`."""
        return max(0, min(self.total, max_seq_length) - self.reply_start)

    def over(self, max_seq_length: int) -> bool:
        """Whether the sequence is longer than `max_seq_length`."""
        return self.total > max_seq_length


@dataclass
class Fitted:
    """Examples that keep at least one reply token, those left out, and the reply tokens trained on."""

    kept: list[dict[str, Any]] = field(default_factory=list)
    left_out: list[dict[str, Any]] = field(default_factory=list)
    tokens_trained: int = 0


def _ids(tokenizer: Any, messages: list[dict[str, str]], **kwargs: Any) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, tokenize=True, **kwargs)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _estimate(messages: list[dict[str, str]]) -> int:
    # About four characters a token, plus a dozen for each turn's role markers.
    return sum(len(m["content"]) + 12 for m in messages) // 4


def spans(examples: list[dict[str, Any]], tokenizer: Any | None) -> list[Span]:
    """Each example's reply start and length in tokens: exact with a tokenizer, estimated without."""
    out = []
    if tokenizer is not None:
        ensure_chat_template(tokenizer)
    for example in examples:
        prompt, whole = list(example["prompt"]), list(example["prompt"]) + list(example["completion"])
        if tokenizer is None:
            out.append(Span(_estimate(prompt), _estimate(whole)))
            continue
        prompt_ids = _ids(tokenizer, prompt, add_generation_prompt=True)
        whole_ids = _ids(tokenizer, whole)
        out.append(Span(_common_prefix(prompt_ids, whole_ids), len(whole_ids)))
    return out


def fit(examples: list[dict[str, Any]], tokenizer: Any | None, max_seq_length: int) -> Fitted:
    """Leave out the examples that would keep no reply token at `max_seq_length`; count the rest's reply tokens."""
    fitted = Fitted()
    for example, span in zip(examples, spans(examples, tokenizer)):
        kept = span.reply_tokens(max_seq_length)
        if kept:
            fitted.kept.append(example)
            fitted.tokens_trained += kept
        else:
            fitted.left_out.append(example)
    return fitted



def fit_job(train: list[dict[str, Any]], evals: list[dict[str, Any]], tokenizer: Any, max_seq_length: int,
            left_out_before: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """A job's training and evaluation examples without those that keep no reply token, and the counts.

    `left_out_before` is what the dataset already left out for length before the job was made.
    Raises DatasetError when no training example is left.
    """
    from common.errors import DatasetError

    fitted, fitted_evals = fit(train, tokenizer, max_seq_length), fit(evals, tokenizer, max_seq_length)
    if not fitted.kept:
        raise DatasetError(f"Every training example's prompt fills the {max_seq_length}-token max length, so "
                           "no reply token would be trained on; raise the max sequence length.")
    counts = {"examples_used": len(fitted.kept),
              "examples_left_out_for_length": left_out_before + len(fitted.left_out),
              "tokens_trained": fitted.tokens_trained,
              "eval_examples_left_out_for_length": len(fitted_evals.left_out)}
    return fitted.kept, fitted_evals.kept, counts
