"""Prompt YAML keeps what the admin typed, reads settings by their type, and refuses hostile text at once."""

from __future__ import annotations

import pytest

from common.errors import PromptValidationError
from chatbot.prompts.template import PromptTemplate, parse_template
from chatbot.prompts.template_yaml import to_yaml
from chatbot.prompts.yaml_text import MAX_CHARS, MAX_DEPTH, load_variables
from chatbot.prompts.library import PromptLibrary, open_prompt_library

BASE = """\
name: hours
description: Opening hours
model:
  temperature: 0.2
  max_tokens: 600
chain_of_thought: false
few_shot_k: 2
variables:
  company: Nimbus Home
system:
  role: You help customers of {company}.
examples: []
"""

# Values YAML 1.1 would turn into something else: a number (570, 1.1, 7, 8, 31, 1000, 1000.0),
# a boolean, a date or a timestamp, infinity. Each must reach the prompt as typed.
LOOKALIKES = [
    "9:30", "09:30", "12:30:45", "1.10", "2.10", "007", "010", "0x1F", "0o17", "1_000", "1e3", "+1", "-0",
    "yes", "no", "on", "off", "Yes", "NO", "y", "n", "true", "False", "2024-01-01", "2024-01-01 10:00:00",
    ".inf", "-.Inf", ".nan", "=", "<<",
]


def with_variable(value: str) -> str:
    return BASE.replace("  company: Nimbus Home\n", f"  company: Nimbus Home\n  fact: {value}\n").replace(
        "You help customers of {company}.", "You help customers of {company}. Fact {fact}.")


@pytest.mark.parametrize("value", LOOKALIKES)
def test_a_variables_default_is_the_text_typed(value):
    template = parse_template(with_variable(value))
    assert template.variables["fact"] == value
    assert template.section("role", template.variables).endswith(f"Fact {value}.")


@pytest.mark.parametrize("value", LOOKALIKES)
def test_every_text_field_keeps_the_text_typed(value):
    text = (BASE.replace("description: Opening hours", f"description: {value}")
            .replace("system:\n", f"tags: [{value}]\nsystem:\n  tone: {value}\n")
            .replace("examples: []", f"examples:\n  - user: {value}\n    assistant: {value}"))
    template = parse_template(text)
    assert template.description == value and template.tone == value and template.tags == [value]
    assert template.examples == [{"user": value, "assistant": value}]
    # Written back and read again, nothing moves.
    assert parse_template(to_yaml(template)) == template


def test_the_field_case_renders_what_the_admin_typed(tmp_path):
    library = open_prompt_library(tmp_path)
    template, version = library.get("general")
    text = template.source.replace(
        "variables:\n", "variables:\n  phone_lines_open: 9:30\n  app_version: 2.10\n  billing_extension: 010\n", 1,
    ).replace(
        "  role: |\n",
        "  role: |\n    Phone lines open at {phone_lines_open}. The current app is version {app_version}.\n"
        "    Billing questions go to extension {billing_extension}.\n", 1,
    )
    library.save("general", text, author="admin", message="opening hours", base_version=version, publish=True)
    system = open_prompt_library(tmp_path).render("general", passages=[]).system  # as after a restart
    assert "Phone lines open at 9:30. The current app is version 2.10." in system
    assert "Billing questions go to extension 010." in system


def test_nothing_is_an_empty_text_and_a_quoted_word_is_the_word():
    text = with_variable("~").replace("description: Opening hours", "description: null")
    template = parse_template(text.replace("  company: Nimbus Home\n", "  company: 'null'\n  fax:\n"))
    assert template.variables == {"company": "null", "fact": "", "fax": ""}
    assert template.description == ""


@pytest.mark.parametrize("old,new,expected", [
    ("temperature: 0.2", "temperature: 0.70", 0.7),
    ("temperature: 0.2", "temperature: 1", 1.0),
    ("temperature: 0.2", "temperature: '0.5'", 0.5),
    ("temperature: 0.2", "temperature: 5e-1", 0.5),
    ("max_tokens: 600", "max_tokens: 0600", 600),  # decimal, never octal
    ("max_tokens: 600", 'max_tokens: "800"', 800),
])
def test_numbers_are_read_as_the_decimal_number_written(old, new, expected):
    template = parse_template(BASE.replace(old, new))
    assert expected in (template.temperature, template.max_tokens)


@pytest.mark.parametrize("old,new,message", [
    ("temperature: 0.2", "temperature: 0,7",
     "'model.temperature' must be a number, not '0,7'; write a number such as 0.2"),
    ("temperature: 0.2", "temperature: 0:30", "'model.temperature' must be a number, not '0:30'"),
    ("temperature: 0.2", "temperature: .nan", "'model.temperature' must be a number, not '.nan'"),
    ("temperature: 0.2", "temperature: [0.2]", "'model.temperature' must be a number, not 'a list'"),
    ("max_tokens: 600", "max_tokens: 10:00", "'model.max_tokens' must be an integer, not '10:00'; write a whole"),
    ("max_tokens: 600", "max_tokens: 0x258", "'model.max_tokens' must be an integer, not '0x258'"),
    ("max_tokens: 600", "max_tokens: 1_000", "'model.max_tokens' must be an integer, not '1_000'"),
    ("max_tokens: 600", "max_tokens: 600.0", "'model.max_tokens' must be an integer, not '600.0'"),
    ("max_tokens: 600", "max_tokens: " + "9" * 5000, "'model.max_tokens' must be an integer, not '999"),
    ("max_tokens: 600", "max_tokens: 99999999", "'model.max_tokens' must be between 1 and 32000, got 99999999"),
    ("few_shot_k: 2", "few_shot_k: two", "'few_shot_k' must be an integer, not 'two'"),
    ("chain_of_thought: false", "chain_of_thought: maybe",
     "'chain_of_thought' must be true, false or auto, not 'maybe'"),
    ("chain_of_thought: false", "knowledge: 1", "'knowledge' must be true or false, not '1'"),
])
def test_a_setting_that_is_not_its_type_is_refused_by_name_with_its_line(old, new, message):
    text = BASE.replace(old, new)
    with pytest.raises(PromptValidationError) as caught:
        parse_template(text)
    assert message in str(caught.value)
    assert caught.value.line == next(n for n, line in enumerate(text.splitlines(), 1) if new in line)


@pytest.mark.parametrize("written,expected", [
    ("true", True), ("yes", True), ("On", True), ("false", False), ("no", False), ("OFF", False), ("auto", "auto"),
])
def test_true_false_settings_read_yaml_spellings_by_their_declared_type(written, expected):
    cot = parse_template(BASE.replace("chain_of_thought: false", f"chain_of_thought: {written}")).chain_of_thought
    assert (type(cot), cot) == (type(expected), expected)
    if written != "auto":
        assert parse_template(BASE + f"knowledge: {written}").knowledge is expected


# A 342-byte "billion laughs": nine levels of nine aliases, a billion strings once expanded.
BILLION_LAUGHS = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n" + "".join(
    f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]\n" for prev, cur in zip("abcdefgh", "bcdefghi"))


def test_nested_aliases_are_refused_before_they_expand():
    assert len(BILLION_LAUGHS.encode()) == 342
    with pytest.raises(PromptValidationError) as caught:
        parse_template(BILLION_LAUGHS)
    assert caught.value.line == 1
    assert "anchors and aliases ('&a') are not allowed" in str(caught.value)
    assert "write the value out in full" in str(caught.value)


@pytest.mark.parametrize("edit,message,line", [
    (("  company: Nimbus Home\n", "  company: &co Nimbus Home\n  brand: *co\n"),
     "variables.company: anchors and aliases ('&co') are not allowed", 9),
    (("examples: []", "examples:\n  - user: &q Where is my parcel?\n    assistant: Tracking.\n"),
     "examples[1].user: anchors and aliases ('&q')", 13),
    (("  max_tokens: 600", "  max_tokens: !!int 600"), "model.max_tokens: the tag '!!int' is not allowed", 5),
    (("examples: []", "examples:\n  - user: !!python/object:os.system x\n    assistant: y\n"),
     "the tag '!!python/object:os.system' is not allowed", 13),
])
def test_anchors_aliases_and_tags_are_refused_with_the_field_and_line(edit, message, line):
    with pytest.raises(PromptValidationError) as caught:
        parse_template(BASE.replace(*edit))
    assert message in str(caught.value) and caught.value.line == line


def test_deep_nesting_and_oversized_text_are_refused():
    deep = BASE.replace("examples: []", "examples: " + "[" * 10_000 + "]" * 10_000)
    with pytest.raises(PromptValidationError, match=f"nested more than {MAX_DEPTH} deep"):
        parse_template(deep)
    huge = BASE.replace("Opening hours", "x" * MAX_CHARS)
    with pytest.raises(PromptValidationError, match=f"a template may have at most {MAX_CHARS:,}"):
        parse_template(huge)


def test_library_save_refuses_hostile_text_and_writes_nothing():
    library = PromptLibrary()
    before = library.labels("general")
    with pytest.raises(PromptValidationError, match="anchors and aliases"):
        library.save("general", BILLION_LAUGHS, author="ana", message="x", base_version=before["latest"])
    assert library.labels("general") == before


def test_sample_variables_keep_the_text_typed_and_refuse_aliases():
    assert load_variables("open_at: 9:30\nversion: 2.10\nextension: 010\nweekend: no\nfax: ~\n") == {
        "open_at": "9:30", "version": "2.10", "extension": "010", "weekend": "no", "fax": ""}
    assert load_variables("  \n") == {}
    with pytest.raises(PromptValidationError, match="anchors and aliases"):
        load_variables(BILLION_LAUGHS)
    with pytest.raises(PromptValidationError, match="'open_at' must be text"):
        load_variables("open_at: [9, 30]")
    with pytest.raises(PromptValidationError, match="one 'name: value' per line"):
        load_variables("- 9:30")


def test_a_template_made_in_code_has_the_hash_of_its_yaml():
    made = PromptTemplate(name="billing", role="You answer billing questions.")
    assert made.content_hash() == PromptTemplate(name="billing", role="You answer billing questions.",
                                                 source=to_yaml(made)).content_hash()
    assert made.content_hash() != PromptTemplate(name="billing", role="Another role.").content_hash()
