"""The passage numbers a reply cites, read from its [n] markers."""

from __future__ import annotations

import re

# Citation markers as models write them: [1], [1, 2], [1,3], [1; 2], [1, 2 and 3], ranges [1-3] (any dash).
_CITED_ITEM = re.compile("(\\d{1,2})(?:\\s*[-\u2010-\u2014\u2212]\\s*(\\d{1,2}))?")
_CITATION = re.compile(rf"\[\s*({_CITED_ITEM.pattern}(?:(?:\s*[,;&]\s*(?:and\s+)?|\s+and\s+)"
                       rf"{_CITED_ITEM.pattern})*)\s*\]")


def cited_numbers(reply: str, passage_count: int) -> list[int]:
    """The passage numbers a reply cites, in order of first use, ignoring out-of-range markers."""
    seen: list[int] = []
    for match in _CITATION.finditer(reply):
        for item in _CITED_ITEM.finditer(match.group(1)):
            ends = sorted((int(item.group(1)), int(item.group(2) or item.group(1))))  # [3-1] reads as [1-3]
            seen += [n for n in range(max(ends[0], 1), min(ends[1], passage_count) + 1) if n not in seen]
    return seen
