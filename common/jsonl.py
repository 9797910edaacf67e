"""JSON Lines as the format defines them: one JSON value per line, lines ended by "\\n".

`str.splitlines()` is not a JSON Lines splitter: it also breaks at U+2028, U+2029, U+0085,
\\v, \\f and \\x1c-\\x1e, which JSON allows unescaped inside strings, so it cuts valid records.
"""

from __future__ import annotations

from typing import Iterator

# JSON's own whitespace: a line of only these holds no value.
_JSON_WHITESPACE = " \t\r"


def json_lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) for every line that holds something; "\\r\\n" endings count as "\\n"."""
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip(_JSON_WHITESPACE):
            yield number, line.removesuffix("\r")
