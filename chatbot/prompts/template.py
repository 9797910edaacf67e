"""Prompt templates as YAML: parsing, validation with line numbers, and safe `{variable}` filling.

Text is kept exactly as typed (see prompt_yaml): a variable written `open_at: 9:30` is "9:30".

A template's text fields may name variables as `{name}`; `{{` and `}}` are literal braces.
Nothing is evaluated: a placeholder is a plain identifier looked up in a dictionary.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from common.errors import PromptValidationError
from chatbot.prompts.escaping import neutralise, quoted
from chatbot.prompts.yaml_text import Located, check_duplicates, is_nothing, load, read_bool, read_number

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The system-prompt sections a template writes itself (passages, customer and summary come from the turn).
TEXT_SECTIONS = ("role", "tone", "escalation_rules", "response_format", "guardrails", "reasoning")
TOP_FIELDS = (
    "name", "description", "tags", "model", "chain_of_thought", "few_shot_k", "knowledge", "variables",
    "system", "examples",
)
MODEL_FIELDS = ("temperature", "max_tokens", "repetition_penalty", "no_repeat_ngram_size")
MAX_TOKENS_LIMIT = 32000


class _Var(str):
    """A placeholder in a compiled text: the variable's name."""


def compile_text(text: str) -> tuple[list[str], list[tuple[int, str]]]:
    """Split text into literal pieces and `_Var` names; also return (offset, problem) syntax errors."""
    parts: list[str] = []
    errors: list[tuple[int, str]] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "{":
            if text.startswith("{{", i):
                literal.append("{")
                i += 2
                continue
            end = text.find("}", i + 1)
            if end == -1:
                errors.append((i, "'{' is never closed; write '{{' for a literal brace"))
                literal.append(text[i:])
                break
            name = text[i + 1:end]
            if not _IDENT.fullmatch(name):
                errors.append((i, f"'{{{name}}}' is not a variable name; variables look like {{customer_name}}, "
                                  "and a literal brace is written '{{' or '}}'"))
            else:
                if literal:
                    parts.append("".join(literal))
                    literal = []
                parts.append(_Var(name))
            i = end + 1
            continue
        if ch == "}":
            if text.startswith("}}", i):
                literal.append("}")
                i += 2
                continue
            errors.append((i, "a single '}' has no matching '{'; write '}}' for a literal brace"))
            i += 1
            continue
        literal.append(ch)
        i += 1
    if literal:
        parts.append("".join(literal))
    return parts, errors


def fill(parts: list[str], values: Mapping[str, str]) -> str:
    """Join compiled parts, replacing each variable by its value (a missing one by an empty string).

    This is the one place where values (customer fields, passages, summaries, file names, examples)
    enter a prompt: every value is neutralised here, and one inside `="..."` is also kept in its quotes.
    """
    out: list[str] = []
    for part in parts:
        if isinstance(part, _Var):
            value = str(values.get(part, ""))
            out.append(quoted(value) if out and out[-1].endswith('="') else neutralise(value))
        else:
            out.append(part)
    return "".join(out)


@dataclass
class PromptTemplate:
    """A named prompt: its sections, examples, variables and model settings, parsed from YAML."""

    name: str
    description: str = ""
    role: str = ""
    tone: str = ""
    escalation_rules: str = ""
    response_format: str = ""
    guardrails: str = ""
    reasoning: str = ""
    examples: list[dict] = field(default_factory=list)
    # True, False, or "auto": on only for messages that look complex.
    chain_of_thought: bool | str = False
    few_shot_k: int = 2
    knowledge: bool = True
    temperature: float = 0.2
    max_tokens: int = 600
    # Against loops in small local models (transformers' generate() and Ollama honour them; 1.0 and 0: off).
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    tags: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    source: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        self._compiled: dict[str, list[str]] = {}
        self._hash = ""

    def content_hash(self) -> str:
        """SHA-256 of the YAML text this template was parsed from (the version's recorded hash)."""
        if not self._hash:
            from chatbot.prompts.template_yaml import to_yaml  # it imports this module

            self._hash = sha256_text(self.source or to_yaml(self))
        return self._hash

    def compiled(self, key: str, text: str) -> list[str]:
        """The text's parts, compiled once per template (templates are immutable once saved)."""
        parts = self._compiled.get(key)
        if parts is None:
            parts = self._compiled[key] = compile_text(text)[0]
        return parts

    def section(self, name: str, values: Mapping[str, str]) -> str:
        """One of TEXT_SECTIONS with its variables filled."""
        return fill(self.compiled(name, getattr(self, name)), values)

    def example(self, index: int, values: Mapping[str, str]) -> tuple[str, str]:
        """Example `index` as (customer text, reply text) with variables filled."""
        ex = self.examples[index]
        return (fill(self.compiled(f"ex{index}.user", ex["user"]), values),
                fill(self.compiled(f"ex{index}.assistant", ex["assistant"]), values))


def sha256_text(text: str) -> str:
    """The SHA-256 hex digest of a text, as recorded on every version and chat turn."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- parsing and validation -------------------------------------------------------------------

def _mapping(value: Any, where: str, loc: Located, path: tuple) -> dict:
    if is_nothing(loc.node(path)):
        return {}
    if not isinstance(value, dict):
        raise PromptValidationError(f"'{where}' must be a mapping of names to values", loc.line(path), where)
    return value


def _list(value: Any, where: str, loc: Located, path: tuple, what: str) -> list:
    if is_nothing(loc.node(path)):
        return []
    if not isinstance(value, list):
        raise PromptValidationError(f"'{where}' must be a list of {what}", loc.line(path), where)
    return value


def _unknown_keys(data: dict, allowed: tuple, where: str, loc: Located, path: tuple) -> None:
    for key in data:
        if key not in allowed:
            raise PromptValidationError(
                f"unknown field '{key}' in {where}; expected one of: {', '.join(allowed)}",
                loc.key_line((*path, key)), str(key),
            )


def _text(value: Any, where: str, loc: Located, path: tuple, required: bool = False) -> str:
    """A text field: exactly what was typed (9:30 stays 9:30, 010 stays 010, yes stays yes)."""
    if is_nothing(loc.node(path)):
        value = ""
    if not isinstance(value, str):
        raise PromptValidationError(f"'{where}' must be text", loc.line(path), where)
    if required and not value.strip():
        raise PromptValidationError(f"'{where}' must not be empty", loc.line(path), where)
    return value


def _shown(value: Any) -> str:
    """A value as quoted in a message: the text typed (shortened), or what kind of thing it is."""
    if not isinstance(value, str):
        return "a list" if isinstance(value, list) else "a mapping"
    return value.strip() if len(value) <= 40 else value.strip()[:40] + "…"


def _number(data: dict, key: str, default, kind: type, low: float, high: float, where: str, loc: Located,
            path: tuple):
    """A number field, read as the decimal number written (max_tokens: 0600 is 600)."""
    if key not in data:
        return default
    value = read_number(data[key], kind)
    if value is None:
        example = "a whole number such as 600" if kind is int else "a number such as 0.2"
        shown = _shown(data[key])
        raise PromptValidationError(
            f"'{where}' must be a{'n integer' if kind is int else ' number'}, not '{shown}'; write {example}",
            loc.line(path), where)
    if not low <= value <= high:
        raise PromptValidationError(f"'{where}' must be between {low:g} and {high:g}, got {_shown(data[key])}",
                                    loc.line(path), where)
    return value


def _switch(data: dict, key: str, default, loc: Located, extra: tuple = ()):
    """A true/false field (chain_of_thought also takes `auto`)."""
    if key not in data:
        return default
    value = data[key]
    if isinstance(value, str) and value.strip() in extra:
        return value.strip()
    flag = read_bool(value.strip()) if isinstance(value, str) else None
    if flag is None:
        allowed = "true, false or auto" if extra else "true or false"
        raise PromptValidationError(f"'{key}' must be {allowed}, not '{_shown(value)}'", loc.line((key,)), key)
    return flag


def _generation_settings(data: dict, loc: Located) -> dict[str, Any]:
    """The `model:` mapping's settings, each read as the number type it declares and checked against its range."""
    model = _mapping(data.get("model"), "model", loc, ("model",))
    _unknown_keys(model, MODEL_FIELDS, "model", loc, ("model",))
    ranges = {"temperature": (0.2, float, 0, 2), "max_tokens": (600, int, 1, MAX_TOKENS_LIMIT),
              "repetition_penalty": (1.0, float, 1, 2), "no_repeat_ngram_size": (0, int, 0, 50)}
    return {name: _number(model, name, default, kind, low, high, f"model.{name}", loc, ("model", name))
            for name, (default, kind, low, high) in ranges.items()}


def _name(data: dict, loc: Located, expected_name: str | None) -> str:
    name = _text(data.get("name"), "name", loc, ("name",), required=True).strip()
    if not NAME_PATTERN.match(name):
        raise PromptValidationError("'name' must be lower-case letters, digits, '-' or '_' (at most 40)",
                                    loc.line(("name",)), "name")
    if expected_name is not None and name != expected_name:
        raise PromptValidationError(f"'name' is '{name}' but this is the '{expected_name}' template; "
                                    "a template cannot be renamed", loc.line(("name",)), "name")
    return name


def _sections(data: dict, loc: Located) -> dict[str, str]:
    """The system prompt's sections (role required), each as text."""
    system = _mapping(data.get("system"), "system", loc, ("system",))
    _unknown_keys(system, TEXT_SECTIONS, "system", loc, ("system",))
    if "role" not in system:
        raise PromptValidationError("'system.role' is required: who the assistant is and what it does",
                                    loc.line(("system",)) or 1, "system.role")
    return {
        key: _text(system.get(key), f"system.{key}", loc, ("system", key), required=key == "role")
        for key in TEXT_SECTIONS
    }


def _variables(data: dict, loc: Located) -> dict[str, str]:
    variables = {}
    for key, value in _mapping(data.get("variables"), "variables", loc, ("variables",)).items():
        if not _IDENT.fullmatch(key):
            raise PromptValidationError(f"variable name '{key}' must be letters, digits and '_'",
                                        loc.key_line(("variables", key)), "variables")
        variables[key] = _text(value, f"variables.{key}", loc, ("variables", key))
    return variables


def _examples(data: dict, loc: Located) -> list[dict[str, str]]:
    """The few-shot examples, each a `user` and an `assistant` text."""
    examples = []
    for index, ex in enumerate(_list(data.get("examples"), "examples", loc, ("examples",), "{user, assistant}")):
        path = ("examples", index)
        if not isinstance(ex, dict):
            raise PromptValidationError(f"example {index + 1} must have 'user' and 'assistant'", loc.line(path),
                                        "examples")
        _unknown_keys(ex, ("user", "assistant"), f"example {index + 1}", loc, path)
        examples.append({
            "user": _text(ex.get("user"), f"examples[{index + 1}].user", loc, (*path, "user"), required=True),
            "assistant": _text(ex.get("assistant"), f"examples[{index + 1}].assistant", loc,
                               (*path, "assistant"), required=True),
        })
    return examples


def _check_placeholders(sections: dict[str, str], examples: list[dict[str, str]], variables: dict[str, str],
                        loc: Located) -> None:
    """Placeholders: balanced braces, and only declared variables."""
    texts = [(("system", k), f"system.{k}", v) for k, v in sections.items()]
    texts += [(("examples", i, part), f"examples[{i + 1}].{part}", ex[part])
              for i, ex in enumerate(examples) for part in ("user", "assistant")]
    for path, where, value in texts:
        parts, errors = compile_text(value)
        if errors:
            offset, problem = errors[0]
            raise PromptValidationError(f"{problem} (in {where})", loc.text_line(path, value, offset), where)
        for part in parts:
            if isinstance(part, _Var) and part not in variables:
                known = ", ".join(sorted(variables)) or "none declared"
                raise PromptValidationError(
                    f"unknown variable {{{part}}} in {where}; declare it under 'variables:' (known: {known})",
                    loc.text_line(path, value, value.find("{" + part + "}")), where,
                )


def parse_template(text: str, expected_name: str | None = None) -> PromptTemplate:
    """Parse and validate a template's YAML; PromptValidationError names the line of the first problem."""
    if not text.strip():
        raise PromptValidationError("the template is empty")
    data, root = load(text)
    loc = Located(root, text)
    if not isinstance(data, dict):
        raise PromptValidationError("a template is a YAML mapping with name, system, examples, ...", line=1)
    check_duplicates(root)
    _unknown_keys(data, TOP_FIELDS, "the template", loc, ())

    name = _name(data, loc, expected_name)
    sections = _sections(data, loc)

    # Settings are read by their declared type; everything else is text, kept as typed.
    generation = _generation_settings(data, loc)
    cot = _switch(data, "chain_of_thought", False, loc, extra=("auto",))
    few_shot_k = _number(data, "few_shot_k", 2, int, 0, 20, "few_shot_k", loc, ("few_shot_k",))
    knowledge = _switch(data, "knowledge", True, loc)

    tags = _list(data.get("tags"), "tags", loc, ("tags",), "words")
    if not all(isinstance(t, str) and t.strip() for t in tags):
        raise PromptValidationError("'tags' must be a list of words", loc.line(("tags",)), "tags")

    variables = _variables(data, loc)
    examples = _examples(data, loc)
    _check_placeholders(sections, examples, variables, loc)
    return PromptTemplate(
        name=name, description=_text(data.get("description"), "description", loc, ("description",)).strip(),
        examples=examples, chain_of_thought=cot, few_shot_k=few_shot_k, knowledge=knowledge,
        **generation, tags=[t.strip() for t in tags], variables=variables,
        source=text, **sections,
    )
