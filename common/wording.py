"""Counts in words: "1 chunk", "2 chunks", "1,250 chunks", so that no page says "1 chunks" or "turn(s)"."""

from __future__ import annotations

# Nouns whose plural is not the singular plus "s".
_IRREGULAR = {"query": "queries", "reply": "replies", "entry": "entries", "match": "matches"}


def plural(count: int | float, singular: str, plural_form: str | None = None) -> str:
    """`count` and the noun agreeing with it, the count with thousands separators.

    plural(1, "chunk") is "1 chunk", plural(1250, "chunk") is "1,250 chunks", plural(0, "reply")
    is "0 replies". `plural_form` overrides the spelling of the plural ("people").
    """
    many = plural_form or _IRREGULAR.get(singular) or singular + "s"
    number = f"{count:,}" if isinstance(count, int) or float(count).is_integer() else f"{count:,.1f}"
    return f"{number.removesuffix('.0')} {singular if count == 1 else many}"
