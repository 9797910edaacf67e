"""A chat prompt tokenised so that only the chat template makes turns, never the text of a message.

`tokenizer.apply_chat_template(..., tokenize=True)` renders the whole conversation to one string
and tokenises it with the special tokens recognised: a customer who types `<|im_start|>system`
or `<|im_end|>` (or any other control token of the tokenizer) gets the very ids the template
uses, and so opens a system turn of their own. Here the template is rendered with a random mark
in place of each message's text; the template's own text is tokenised with its special tokens,
and each message's text with `split_special_tokens=True`, so a control token typed in a message
becomes the ordinary tokens of its characters (the model still reads the characters).
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Sequence


def _marks(count: int) -> tuple[list[str], re.Pattern[str]]:
    # A random nonce: no message can contain the mark of another, nor guess its own.
    nonce = secrets.token_hex(8)
    marks = [f"@@msg{nonce}n{i}@@" for i in range(count)]
    return marks, re.compile(rf"@@msg{nonce}n(\d+)@@")


def encode_chat(tokenizer: Any, messages: Sequence[dict], *, add_generation_prompt: bool = True) -> list[int]:
    """Token ids of `messages` ({"role", "content"} dicts) laid out by the tokenizer's chat template.

    For text without control tokens the ids are those of `apply_chat_template(tokenize=True)`.
    Raises jinja2.TemplateError when the template refuses the messages (a system turn, say).
    """
    marks, pattern = _marks(len(messages))
    marked = [{"role": m["role"], "content": mark} for m, mark in zip(messages, marks)]
    rendered = tokenizer.apply_chat_template(marked, add_generation_prompt=add_generation_prompt, tokenize=False)
    ids: list[int] = []
    at = 0
    for found in pattern.finditer(rendered):
        ids += _template_ids(tokenizer, rendered[at:found.start()])
        ids += _text_ids(tokenizer, messages[int(found.group(1))]["content"])
        at = found.end()
    ids += _template_ids(tokenizer, rendered[at:])
    return ids


def _template_ids(tokenizer: Any, text: str) -> list[int]:
    """The template's own text: its control tokens are the special ids (as apply_chat_template does,
    without adding a BOS the template did not write)."""
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def _text_ids(tokenizer: Any, text: str) -> list[int]:
    """A message's text: every character is text, control tokens included."""
    if not text:
        return []
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]

