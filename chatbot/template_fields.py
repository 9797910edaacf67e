"""Reading a prompt template's YAML: line numbers for field paths, syntax and duplicate-key errors, typed fields."""

from __future__ import annotations

from typing import Any

import yaml

from common.errors import PromptValidationError


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


def compose(text: str) -> tuple[Any, yaml.Node | None]:
    loader = yaml.SafeLoader(text)
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
    # PyYAML keeps the last of two equal keys without a word; an admin would lose the first silently.
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


def mapping_field(value: Any, where: str, loc: Located, path: tuple) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PromptValidationError(f"'{where}' must be a mapping of names to values", loc.line(path), where)
    return value


def unknown_keys(data: dict, allowed: tuple, where: str, loc: Located, path: tuple) -> None:
    for key in data:
        if key not in allowed:
            raise PromptValidationError(
                f"unknown field '{key}' in {where}; expected one of: {', '.join(allowed)}",
                loc.key_line((*path, key)), str(key),
            )


def text_field(value: Any, where: str, loc: Located, path: tuple, required: bool = False) -> str:
    if value is None:
        value = ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise PromptValidationError(f"'{where}' must be text", loc.line(path), where)
    value = str(value)
    if required and not value.strip():
        raise PromptValidationError(f"'{where}' must not be empty", loc.line(path), where)
    return value


def number_field(value: Any, kind: type, low: float, high: float, where: str, loc: Located, path: tuple):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise PromptValidationError(f"'{where}' must be a{'n integer' if kind is int else ' number'}",
                                    loc.line(path), where)
    if not low <= value <= high:
        raise PromptValidationError(f"'{where}' must be between {low:g} and {high:g}, got {value}",
                                    loc.line(path), where)
    return kind(value)
