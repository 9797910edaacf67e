"""Text read as the same text: one form for what looks alike, before it is indexed, embedded or matched.

`fold` is Unicode's NFKC_Casefold done with the standard library (NFKC, full case folding, NFKC
again: Unicode Standard Annex #15 and section 3.13 of the Unicode Standard), plus one step of our
own: every dash (general category Pd, and U+2212 MINUS SIGN) becomes "-", because customers copy
error codes and card numbers out of documents typeset with en dashes, non-breaking hyphens or
minus signs, and NFKC keeps those apart from the hyphen-minus.

What it makes equal: full-width forms ("Ｅ－１０２" and "E-102"), composed and decomposed letters
(NFC and NFD "Rückerstattung"), ligatures ("ﬁ" and "fi"), superscripts ("m²" and "m2"), case
("REFUND", "refund", "ß" and "ss"), the no-break and other fixed-width spaces and plain spaces.
"""

from __future__ import annotations

import unicodedata

# Bumped whenever `fold` changes: what was indexed or embedded with another form must be rebuilt.
FOLD_VERSION = 1

# Every character of general category Pd in Unicode 15.1 (unicodedata.unidata_version of Python
# 3.11: listed here, as a scan of all code points costs 0.15 s at import), and U+2212 MINUS SIGN.
_DASHES = dict.fromkeys([
    0x058A, 0x05BE, 0x1400, 0x1806, 0x2010, 0x2011, 0x2012, 0x2013, 0x2014, 0x2015, 0x2212, 0x2E17, 0x2E1A,
    0x2E3A, 0x2E3B, 0x2E40, 0x2E5D, 0x301C, 0x3030, 0x30A0, 0xFE31, 0xFE32, 0xFE58, 0xFE63, 0xFF0D, 0x10EAD,
], "-")


def fold(text: str) -> str:
    """`text` in its matching form: NFKC, case-folded, dashes as "-". Applying it twice changes nothing."""
    if text.isascii():  # the usual case: NFKC leaves ASCII alone, and only case remains to fold
        return text.lower()
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return folded.translate(_DASHES)
