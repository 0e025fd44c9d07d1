"""Phone numbers: international, North American and European national shapes, and the cue words.

A shape that only phone numbers take ("+44 20 7946 0958", "(555) 123-4567",
"020 7946 0958" with its trunk 0) is enough.  Shapes that other numbers share
are checked against the numbering plans in ``phonenumbers`` (Google's
libphonenumber metadata): "0044 20 7946 0958" (the "00" international prefix),
"612 345 678" (Spain, no trunk prefix), "(11) 91234-5678" (Brazil).  A bare
digit run is a phone number only next to a cue word (``_numbers``).
"""

from __future__ import annotations

import re
from typing import Final

import phonenumbers

from coop.node.intake.redaction._model import NUM_LEFT, NUM_RIGHT, PiiType, Span, digit_count, folded_first
from coop.node.intake.redaction._ssn import FILLERS

__all__ = [
    "PHONE_CUE",
    "PHONE_CUE_AFTER",
    "PHONE_CUE_WORDS",
    "grouped_phones",
    "idd_phones",
    "international_phones",
    "national_phones",
]

# International: "+CC" then up to five groups; possessive repeats keep long
# digit runs linear.
_PHONE_INTL: Final = re.compile(
    r"""
    (?<![\w\]+\#/.,=-])
    \+[1-9][0-9]*+
    (?:[ .-]?\([0-9]{1,5}\)|[ .-][0-9]++|(?<=\))[0-9]++){0,5}+
    (?![\w\[]|[ .-]\[)  # a group would continue into a placeholder
    """,
    re.VERBOSE,
)
# The same written with the "00" international call prefix instead of "+".
_PHONE_IDD: Final = re.compile(
    r"""
    (?<![\w\]+\#/.,=-])
    00[1-9][0-9]*+
    (?:[ .-]?\([0-9]{1,5}\)|[ .-][0-9]++|(?<=\))[0-9]++){0,5}+
    (?![\w\[]|[ .-]\[)
    """,
    re.VERBOSE,
)
# North America: (555) 123-4567, 555-123-4567, 555.123.4567, 1-800-555-0199.
_PHONE_NANP: Final = re.compile(
    rf"""{NUM_LEFT}
    (?:1[ .-])?
    (?:\([2-9][0-9]{{2}}\)[ ]?[0-9]{{3}}[ .-][0-9]{{4}}
      |[2-9][0-9]{{2}}([ .-])[0-9]{{3}}\1[0-9]{{4}})
    {NUM_RIGHT}
    """,
    re.VERBOSE,
)
# National forms with the trunk 0 (never "00", the international prefix) and
# one separator: 020 7946 0958, 06 12 34 56 78, 030/1234567, 098765 43210,
# (0)20 7946 0958.
_PHONE_NATIONAL: Final = re.compile(
    rf"""{NUM_LEFT}(?<![0-9\]][ ])  # not the tail of a longer grouped number
    (?:\(0(?:[1-9][0-9]{{0,3}})?\)[ ]?[0-9]{{2,8}}(?:[ -][0-9]{{2,8}}){{0,3}}+
      |0[1-9][0-9]{{0,4}}(?P<s>[ ./-])[0-9]{{2,8}}(?:(?P=s)[0-9]{{2,8}}){{0,3}}+)
    (?![\w\[]|[ .,/-][0-9\[])
    """,
    re.VERBOSE,
)
# National forms without a trunk prefix, grouped by spaces as the countries
# print them: 612 345 678, 612 34 56 78, 91 123 45 67, 98765 43210, (11) 91234-5678.
# Many other numbers take these shapes, so the numbering plans decide.
_PHONE_GROUPED: Final = re.compile(
    rf"""{NUM_LEFT}(?<![0-9\]][ ])
    (?:\([1-9][0-9]\)[ ]?[0-9]{{4,5}}-[0-9]{{4}}
      |[1-9][0-9]{{1,2}}[ ][0-9]{{2,3}}(?:[ ][0-9]{{2,3}}){{1,2}}+
      |[6-9][0-9]{{4}}[ ][0-9]{{5}})
    (?![\w\[]|[ .,/-][0-9\[])
    """,
    re.VERBOSE,
)
# The plans that print national numbers without a trunk prefix in the shapes above.
_GROUPED_REGIONS: Final = ("ES", "PT", "BR", "IN")
_DIGIT_RUN: Final = re.compile(r"[0-9]+")
_DOTTED_QUAD: Final = re.compile(r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}")  # an address, never a phone


def _valid(country_code: int, national: str) -> bool:
    """Whether the numbering plan of ``country_code`` assigns ``national`` (digits only).

    The number is built directly rather than through ``phonenumbers.parse``,
    which would re-scan text we have already taken apart, at twice the cost.
    """
    zeros = len(national) - len(national.lstrip("0"))
    if not national or zeros == len(national):
        return False
    number = phonenumbers.PhoneNumber(
        country_code=country_code,
        national_number=int(national),
        italian_leading_zero=zeros > 0 or None,
        number_of_leading_zeros=zeros if zeros > 1 else None,
    )
    return phonenumbers.is_valid_number(number)


def _valid_international(digits: str) -> bool:
    """``digits`` after the international prefix: a country code, then a number it assigns."""
    for size in (1, 2, 3):
        code = int(digits[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:  # country codes are prefix-free
            national = digits[size:]
            # "+44 (0)20 ...": a trunk 0 written after the country code.
            return _valid(code, national) or (national[:1] == "0" and _valid(code, national[1:]))
    return False


_GROUPED_CODES: Final = tuple(phonenumbers.country_code_for_region(region) for region in _GROUPED_REGIONS)


def international_phones(text: str, lo: int, hi: int, out: list[Span]) -> None:
    for m in _PHONE_INTL.finditer(text, lo, hi):
        # E.164 caps a number at 15 digits: drop trailing groups beyond that.
        count, end = 0, m.start()
        for run in _DIGIT_RUN.finditer(m[0]):
            if count + len(run[0]) > 15:
                break
            count, end = count + len(run[0]), m.start() + run.end()
        if end < m.end() and text[end] == ")":
            end += 1
        if count >= 8 and text.count(".", m.start(), end) != 1:  # one dot: an amount
            out.append((m.start(), end, PiiType.PHONE))


def idd_phones(text: str, lo: int, hi: int, out: list[Span]) -> None:
    """ "0044 20 7946 0958": the longest run of whole groups that is a valid number."""
    for m in _PHONE_IDD.finditer(text, lo, hi):
        ends = [m.start() + run.end() for run in _DIGIT_RUN.finditer(m[0])]
        for end in reversed(ends):
            digits = "".join(_DIGIT_RUN.findall(text, m.start(), end))
            if len(digits) > 17:
                continue
            if len(digits) < 10:
                break
            if _valid_international(digits[2:]):
                out.append((m.start(), end, PiiType.PHONE))
                break


def national_phones(text: str, lo: int, hi: int, out: list[Span]) -> None:
    for m in _PHONE_NANP.finditer(text, lo, hi):
        out.append((m.start(), m.end(), PiiType.PHONE))
    for m in _PHONE_NATIONAL.finditer(text, lo, hi):
        if 9 <= digit_count(m[0]) <= 12 and not _DOTTED_QUAD.fullmatch(m[0]):
            out.append((m.start(), m.end(), PiiType.PHONE))


def grouped_phones(text: str, lo: int, hi: int, out: list[Span]) -> None:
    for m in _PHONE_GROUPED.finditer(text, lo, hi):
        if any(s[0] == m.start() and s[2] is PiiType.PHONE for s in out):
            continue  # already taken by a shape of its own
        digits = "".join(_DIGIT_RUN.findall(m[0]))
        if any(_valid(code, digits) for code in _GROUPED_CODES):
            out.append((m.start(), m.end(), PiiType.PHONE))


# --- cue words -----------------------------------------------------------------------

# A number right after one of these (and a few fillers) is a phone number:
# "tel. 0612345678", "my number is 612345678", "ring me on 07911123456",
# "contact the front desk at 2125550123".
PHONE_CUE: Final = re.compile(
    r"(?:(?<![\w\[\]])"
    + folded_first([
        *("phone", "telephone", "tel", "mobile", "mob", "mobil", "cell", "cellphone", "ph", "whatsapp",
          "fax", "landline", "hotline", "helpline"),
        *(rf"{w}[ \t]+line" for w in ("office", "direct", "work", "home", "phone", "support")),
        *(rf"{w}[ \t]+(?:[a-z]+[ \t]+)?(?:number|digits)" for w in ("my", "our", "your", "his", "her", "their")),
        *(rf"{w}(?:[ \t]+[\w'’]+){{0,3}}?[ \t]+(?:at|on)"
          for w in ("call", "text", "reach", "ring", "phone", "contact", "whatsapp", "message", "sms", "dial")),
        r"give[ \t]+(?:me|us|him|her|them)[ \t]+a[ \t]+(?:call|ring|buzz)(?:[ \t]+(?:at|on))?",
        "dial",
    ])
    + r"|['’][sSſ](?i:[ \t]+number))(?![\w\[\]])\.?"
    + FILLERS
)  # fmt: skip
# ... or right before one of these: "0612345678 is my cell", "... (mobile)".
PHONE_CUE_AFTER: Final = re.compile(
    r"(?i:(?:[ \t]*\([ \t]*|[ \t]+(?:is|as|=)[ \t]+)(?:(?:my|our|your|his|her|their|the)[ \t]+)?"
    r"(?:[a-z]+[ \t]+)?(?:cell|mobile|phone|number|landline|whatsapp|fax|tel)(?![\w\[\]]))"
)
# Every word one of the cues above needs (case-folded), to skip the searches in texts that have none.
PHONE_CUE_WORDS: Final = (
    "phone", "telephone", "tel", "mobile", "mob", "mobil", "cell", "cellphone", "ph", "whatsapp",
    "fax", "landline", "hotline", "helpline", "line", "number", "digits", "call", "text", "reach",
    "ring", "contact", "message", "sms", "dial", "give",
)  # fmt: skip
