"""Reading prompt YAML as the admin typed it: every value is text until its field says otherwise.

YAML 1.1 resolution (PyYAML's SafeLoader) turns 9:30 into 570, 2.10 into 2.1, 010 into 8, yes
into True and 2024-01-01 into a date before a template could say what the field holds. Prompt
YAML is therefore read with PyYAML's BaseLoader, where every scalar is the string that was typed,
and each typed field (a number, an integer, true/false) is then read by its own rule below.

Reading stays cheap on any text: anchors, aliases and tags are refused (nested aliases can
expand a few hundred bytes into billions of values), and the size and nesting depth are capped.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from common.errors import PromptValidationError

MAX_CHARS = 100_000  # a shipped template is about 3,000
MAX_DEPTH = 8  # nested mappings and lists; a template needs 3 (examples > example > field)
YAML_TAG = "tag:yaml.org,2002:"
PLAIN_TAGS = (f"{YAML_TAG}str", f"{YAML_TAG}seq", f"{YAML_TAG}map", "!")
# Plain (unquoted) words that mean "nothing" in every YAML version: an empty text.
NULLS = ("", "~", "null", "Null", "NULL")
# true/false as YAML 1.1 spells them, read only where a field is declared true/false.
TRUE_WORDS = ("true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON")
FALSE_WORDS = ("false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF")
_INT = re.compile(r"[-+]?[0-9]{1,15}")  # more digits than any setting needs, fewer than int() refuses
_FLOAT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


class _Loader(yaml.BaseLoader):
    """BaseLoader that refuses anchors, aliases, tags and deep nesting as it composes each node."""

    def __init__(self, text: str):
        super().__init__(text)
        self.path: list = []

    def where(self, index) -> str:
        """The field being composed, as messages name it: `variables.open_at`, `examples[2].user`."""
        where = ""
        for step in [*self.path, index]:
            if isinstance(step, int):
                where += f"[{step + 1}]"
            elif isinstance(step, yaml.ScalarNode):
                where += f".{step.value}" if where else step.value
        return f"{where}: " if where and index is not None else ""

    def compose_node(self, parent, index):
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
            mark = f"*{event.anchor}" if isinstance(event, yaml.AliasEvent) else f"&{event.anchor}"
            raise PromptValidationError(
                f"{self.where(index)}anchors and aliases ('{mark}') are not allowed in prompt YAML; "
                "write the value out in full where it is used", line=line)
        if getattr(event, "tag", None) not in (None, *PLAIN_TAGS):
            tag = event.tag.replace(YAML_TAG, "!!")
            raise PromptValidationError(
                f"{self.where(index)}the tag '{tag}' is not allowed in prompt YAML; remove it (text is kept "
                "as typed and each setting is read as its own type)", line=line)
        if isinstance(event, yaml.ScalarEvent):
            return super().compose_node(parent, index)
        if len(self.path) >= MAX_DEPTH:
            raise PromptValidationError(f"{self.where(index)}mappings and lists are nested more than {MAX_DEPTH} "
                                        "deep; a template needs 3 levels", line=line)
        self.path.append(index)
        try:
            return super().compose_node(parent, index)
        finally:
            self.path.pop()


def load(text: str, what: str = "a template") -> tuple[Any, yaml.Node | None]:
    """The document as plain data (strings, lists, dicts) and its node tree, for line numbers."""
    if len(text) > MAX_CHARS:
        raise PromptValidationError(f"the text is {len(text):,} characters long; {what} may have at most "
                                    f"{MAX_CHARS:,}")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if exc.context:
            started = exc.context_mark
            where = f" started on line {started.line + 1}" if started and mark and started.line != mark.line else ""
            problem = f"{problem} ({exc.context}{where})"
        raise PromptValidationError(f"YAML syntax error: {problem}", line=mark.line + 1 if mark else None) from exc
    except yaml.YAMLError as exc:
        raise PromptValidationError(f"YAML error: {exc}") from exc
    finally:
        loader.dispose()
    return data, node


def check_duplicates(node: yaml.Node | None) -> None:
    """Refuse a key written twice in one mapping (YAML would keep the last one without a word)."""
    if isinstance(node, yaml.MappingNode):
        seen: set = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise PromptValidationError(f"'{key.value}' appears twice", line=key.start_mark.line + 1,
                                                field=key.value)
                seen.add(key.value)
            check_duplicates(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            check_duplicates(item)


def is_nothing(node: yaml.Node | None) -> bool:
    """Whether a value is absent, left empty, or a plain ~ / null."""
    return node is None or (isinstance(node, yaml.ScalarNode) and node.style is None and node.value in NULLS)


def read_bool(value: str) -> bool | None:
    """true/false (also YAML 1.1's yes/no, on/off), or None when the text is neither."""
    return True if value in TRUE_WORDS else False if value in FALSE_WORDS else None


def read_number(value: str, kind: type) -> int | float | None:
    """A decimal number as written (010 is ten, never eight), or None when the text is not one."""
    pattern = _INT if kind is int else _FLOAT
    return kind(value) if isinstance(value, str) and pattern.fullmatch(value.strip()) else None


class Located:
    """The YAML node tree, to turn a field path into the line the admin sees."""

    def __init__(self, root: yaml.Node | None, text: str):
        self.root = root
        self.lines = text.splitlines()

    def node(self, path: tuple) -> yaml.Node | None:
        node = self.root
        for step in path:
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == step), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
                node = node.value[step]
            else:
                return None
        return node

    def key_line(self, path: tuple) -> int | None:
        """The line of the key at `path` (the last step), 1-based."""
        parent = self.node(path[:-1])
        if isinstance(parent, yaml.MappingNode):
            for k, _ in parent.value:
                if isinstance(k, yaml.ScalarNode) and k.value == path[-1]:
                    return k.start_mark.line + 1
        return self.line(path)

    def line(self, path: tuple) -> int | None:
        node = self.node(path)
        while node is None and path:
            path = path[:-1]
            node = self.node(path)
        return node.start_mark.line + 1 if node is not None else None

    def text_line(self, path: tuple, value: str, offset: int) -> int | None:
        """The source line of character `offset` inside the string at `path`."""
        node = self.node(path)
        if not isinstance(node, yaml.ScalarNode):
            return self.line(path)
        if node.style == "|":
            # A literal block keeps its lines: content starts on the line after the `|`.
            return node.start_mark.line + 2 + value.count("\n", 0, offset)
        if "\n" not in value and node.start_mark.line == node.end_mark.line:
            return node.start_mark.line + 1
        # Folded or multi-line plain text: find the snippet in the node's own lines.
        snippet = value[offset:offset + 12].split("\n")[0]
        for number in range(node.start_mark.line, min(node.end_mark.line + 1, len(self.lines))):
            if snippet and snippet in self.lines[number]:
                return number + 1
        return node.start_mark.line + 1


def load_variables(text: str) -> dict[str, str]:
    """Sample variable values (`name: value` lines), each kept as the text typed."""
    if not text.strip():
        return {}
    data, root = load(text, "the sample variables")
    if is_nothing(root):
        return {}
    if not isinstance(data, dict):
        raise PromptValidationError("write one 'name: value' per line", line=1)
    check_duplicates(root)
    loc = Located(root, text)
    values = {}
    for key, value in data.items():
        if not isinstance(value, str):
            raise PromptValidationError(f"'{key}' must be text", loc.line((key,)), key)
        values[key] = "" if is_nothing(loc.node((key,))) else value
    return values
