"""Values as data inside a prompt's tagged sections: markup a value holds is shown, never obeyed."""

from __future__ import annotations

import re

# What starts markup: a tag or closing tag, a comment, CDATA, a processing instruction, a chat control
# token (`<|im_start|>`). Any name, not only the prompt's own sections: a value may try any tag.
_MARKUP_START = re.compile(r"<(?=[/!?|A-Za-z_])")


def neutralise(value: str) -> str:
    """`value` as data inside the prompt's tagged sections: each `<` that would start markup becomes
    `&lt;`, so no value opens or closes a section (`</passage>`, `<guardrails>`...); the words stay
    readable. Applying it twice changes nothing."""
    return _MARKUP_START.sub("&lt;", str(value))


def quoted(value: str) -> str:
    """A value inside an attribute's double quotes: it cannot end the attribute, nor the tag."""
    return " ".join(neutralise(value).replace('"', "&quot;").split())
