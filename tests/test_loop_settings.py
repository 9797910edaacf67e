"""The templates' settings against loops: parsed and validated, carried to the backend, applied to the reply only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backends.local import loop_processors
from chatbot.prompts.template import parse_template
from chatbot.prompts.template_yaml import to_yaml
from common.errors import PromptValidationError
from common.types import ChatRequest

TEMPLATES = Path(__file__).resolve().parent.parent / "chatbot" / "prompts" / "templates"


def billing(old: str = "", new: str = "") -> str:
    text = (TEMPLATES / "billing.yaml").read_text()
    return text.replace(old, new, 1) if old else text


def test_the_reply_templates_ship_loop_settings_and_they_round_trip():
    for name in ("general", "billing", "account", "technical"):
        template = parse_template((TEMPLATES / f"{name}.yaml").read_text())
        assert (template.repetition_penalty, template.no_repeat_ngram_size) == (1.2, 6), name
        assert parse_template(to_yaml(template)) == template
    # A template that sets neither keeps both off.
    plain = parse_template(billing("  repetition_penalty: 1.2\n  no_repeat_ngram_size: 6\n", ""))
    assert (plain.repetition_penalty, plain.no_repeat_ngram_size) == (1.0, 0)


@pytest.mark.parametrize("old,new,message", [
    ("repetition_penalty: 1.2", "repetition_penalty: 0.5", "'model.repetition_penalty' must be between 1 and 2"),
    ("no_repeat_ngram_size: 6", "no_repeat_ngram_size: six", "'model.no_repeat_ngram_size' must be an integer"),
])
def test_a_bad_loop_setting_is_refused_with_its_line(old, new, message):
    text = billing(old, new)
    with pytest.raises(PromptValidationError) as caught:
        parse_template(text)
    assert message in str(caught.value)
    assert caught.value.line == next(n for n, line in enumerate(text.splitlines(), 1) if new in line)


def test_the_chats_request_carries_the_templates_loop_settings():
    from chatbot.prompts.library import PromptLibrary

    rendered = PromptLibrary().render("billing", passages=[], query="I was charged twice")
    assert (rendered.repetition_penalty, rendered.no_repeat_ngram_size) == (1.2, 6)


def request(penalty: float = 1.0, ngram: int = 0) -> ChatRequest:
    return ChatRequest(system="", messages=[], repetition_penalty=penalty, no_repeat_ngram_size=ngram)


def test_the_penalty_and_the_ngram_rule_look_at_the_reply_not_the_prompt():
    assert loop_processors(request(), prompt_tokens=3) == []
    # Prompt tokens 5, 6, 7; the reply so far 7, 8, 7.
    ids = torch.tensor([[5, 6, 7, 7, 8, 7]])
    (penalty,) = loop_processors(request(penalty=1.25), prompt_tokens=3)
    scores = penalty(ids, torch.full((1, 10), 2.0))
    assert scores[0, 5] == 2.0 and scores[0, 6] == 2.0  # only in the prompt: a passage's words stay free
    assert scores[0, 7] == pytest.approx(1.6) and scores[0, 8] == pytest.approx(1.6)  # in the reply: 2.0 / 1.25
    (ngram,) = loop_processors(request(ngram=2), prompt_tokens=3)
    scores = ngram(ids, torch.zeros((1, 10)))
    assert scores[0, 8] == float("-inf")  # "7 8" is in the reply: 8 cannot follow 7 again
    # "7 7" spans the prompt's last token and the reply's first: the whole sequence would ban 7 here.
    assert scores[0, 7] == 0.0
