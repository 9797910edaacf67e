"""Secrets a customer types (card numbers, bank accounts, national ids, passwords, codes, access
tokens) replaced by a visible marker before a message is stored, searched, exported, sent to a
model or used for training.

Card numbers are recognised by the Luhn checksum (ISO/IEC 7812-1) and IBANs by their ISO 13616
mod-97 check, so order and tracking numbers of the same length stay readable for the agent.
"""

from __future__ import annotations

import re

# What people and documents put between a card number's digit groups: any white space but a line
# break (the no-break, narrow no-break, figure and thin spaces that word processors and phones
# insert included), dots, and every dash; up to four of them, mixed ("4111  1111.1111\u2013 1111").
_CARD_SEPARATOR = r"(?:[^\S\r\n]|[.\-\u2010-\u2015\u2212\uFE63\uFF0D])"
# 13-19 digits (PANs are 13-19 digits: ISO/IEC 7812-1), in any script's digits (full-width too).
_CARD = re.compile(rf"\b\d(?:{_CARD_SEPARATOR}{{0,4}}\d){{12,18}}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
# US social security numbers and UK National Insurance numbers, in their written forms.
_NATIONAL_ID = re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b"
                          r"|\b(?![DFIQUV])[A-Z](?![DFIOQUV])[A-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
# What follows "password is", "PIN:" or "code 1234"; not "error code E42", which helps the agent.
_SECRET = re.compile(
    r"(?<!error )\b(password|passcode|passwort|pin|cvv|cvc|code)(?:\s+(?:is|was)\s+|\s*[:=]\s*|\s+(?=\S*\d))"
    # The secret itself, without the punctuation that ends the sentence after it.
    r"\S+?(?=[,.;:!?)]*(?:\s|$))",
    re.IGNORECASE,
)
# Access tokens by their published prefixes (OpenAI, Anthropic, GitHub, Slack, AWS key ids, Stripe),
# JSON Web Tokens, and bearer credentials.
_TOKEN = re.compile(
    r"\b(?:sk-(?:ant-)?[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}"
    r"|AKIA[0-9A-Z]{16}|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
    r"|(?<=\bBearer )[A-Za-z0-9._~+/-]{16,}=*",
)

MARKERS = {"card": "[card number]", "iban": "[bank account]", "national_id": "[national id]",
           "token": "[access token]"}


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn checksum."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """Whether an IBAN (spaces allowed) passes the ISO 13616 mod-97 check."""
    compact = text.replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def redact(text: str) -> str:
    """`text` with each secret replaced by its marker (e.g. "[card number]", "password [redacted]")."""
    return redact_with_kinds(text)[0]


def redact_with_kinds(text: str) -> tuple[str, list[str]]:
    """The redacted text and the kinds of secret found (e.g. ["card", "password"]), in order."""
    kinds: list[str] = []

    def replace(kind: str, valid=None):
        def substitute(match: re.Match) -> str:
            if valid is not None and not valid(match.group(0)):
                return match.group(0)
            kinds.append(kind)
            return MARKERS[kind]
        return substitute

    text = _TOKEN.sub(replace("token"), text)
    text = _IBAN.sub(replace("iban", iban_valid), text)
    text = _CARD.sub(replace("card", lambda found: luhn_valid(re.sub(r"\D", "", found))), text)
    text = _NATIONAL_ID.sub(replace("national_id"), text)

    def secret(match: re.Match) -> str:
        kinds.append(match.group(1).lower())
        return f"{match.group(1)} [redacted]"

    return _SECRET.sub(secret, text), kinds
