"""The number-shaped rules, driven by one scan for "numeric islands".

The regex engine only scans quickly for a pattern that starts with a literal or
a character class.  So one scan finds the islands (digits with the separators
numbers are written with) and every number-shaped rule runs only around an
island with enough digits; the other rules wait for a literal gate ("@", "0x",
"bc1", ":hex:", a cue word).
"""

from __future__ import annotations

import re
from typing import Final

from coop.node.intake.redaction._finance import B58_LETTERS, btc_legacy, cards, iban_at
from coop.node.intake.redaction._model import NUM_LEFT, NUM_RIGHT, RANK, PiiType, Span, digit_count, words_in
from coop.node.intake.redaction._network import ipv4s
from coop.node.intake.redaction._phones import (
    PHONE_CUE,
    PHONE_CUE_AFTER,
    PHONE_CUE_WORDS,
    grouped_phones,
    idd_phones,
    international_phones,
    national_phones,
)
from coop.node.intake.redaction._ssn import SSN_CUE, SSN_CUE_AFTER, ssns, valid_ssn

__all__ = ["CUE_WORDS", "numbers"]

# An island opens at a digit not glued to a letter or digit (so the digit runs
# inside hashes and addresses cost nothing), or at an IBAN's check digits: a
# digit after two letters that start a word, in either case.
_ISLAND: Final = re.compile(r"[0-9](?:(?<![^\W_][0-9])|(?<=(?<![\w\]])[A-Za-z]{2}[0-9]))[0-9 ()./+-]*+")
# The characters an island may hold besides digits: a rule's separators lie
# between its digits, so within the island stripped of them at its end.
_NOT_DIGITS: Final = " ()./+-"
_NOT_DIGITS_BYTES: Final = _NOT_DIGITS.encode()
_LETTERS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_B58_DIGITS: Final = frozenset("123456789")

# --- numbers that only a cue word makes personal --------------------------------

# A bare number is an SSN or a phone number only next to its cue, joined by a
# few filler words: "SSN: 123456789", "my mobile number is 0612345678",
# "0612345678 is my cell".
_CUED_NUMBER: Final = re.compile(
    rf"{NUM_LEFT}\+?(?:\([0-9]{{1,5}}\)[ .-]?)?[0-9]++(?:[ .-][0-9]++)*+{NUM_RIGHT}(?![ ]\[)"
)
_CUE_REACH: Final = 48  # how far back a cue and its fillers may start
# Every word some number cue needs (case-folded).
CUE_WORDS: Final = frozenset(("ssn", "social", *PHONE_CUE_WORDS))
_DATE_LIKE: Final = re.compile(
    r"[0-9]{4}[-./][0-9]{1,2}[-./][0-9]{1,2}|[0-9]{1,2}[-./][0-9]{1,2}[-./][0-9]{2,4}"
)


_ASCII_SEPARATORS: Final = bytes.maketrans(
    bytes(c for c in range(128) if not chr(c).isalpha()), b" " * sum(not chr(c).isalpha() for c in range(128))
)


# What PHONE_CUE needs among the words before a number: one of these alone, a
# verb with "at" or "on" ("call me on"), or "give" with what is given ("give me a ring").
_ALONE: Final = frozenset(
    w.encode()
    for w in (
        "phone", "telephone", "tel", "mobile", "mob", "mobil", "cell", "cellphone", "ph", "whatsapp",
        "fax", "landline", "hotline", "helpline", "dial", "line", "number", "digits",
    )
)  # fmt: skip
_VERBS: Final = frozenset(w.encode() for w in ("call", "text", "reach", "ring", "contact", "message", "sms"))
_AT_ON: Final = frozenset((b"at", b"on"))
_GIVEN: Final = frozenset((b"call", b"ring", b"buzz"))


def _near_cue_word(text: str, lo: int, hi: int) -> bool:
    """Whether ``text[lo:hi]`` holds the words a phone cue needs: the cheap test before PHONE_CUE."""
    window = text[lo:hi].casefold()
    if not window.isascii():
        return True  # the pattern decides
    words = set(window.encode().translate(_ASCII_SEPARATORS).split())
    return (
        not _ALONE.isdisjoint(words)
        or (not _VERBS.isdisjoint(words) and not _AT_ON.isdisjoint(words))
        or (b"give" in words and not _GIVEN.isdisjoint(words))
    )


def _cued_numbers(text: str, lo: int, hi: int, out: list[Span]) -> None:
    for m in _CUED_NUMBER.finditer(text, lo, hi):
        start, end, number = m.start(), m.end(), m[0]
        # A hit of the same span found by a shape already (a phone number, an
        # SSN) makes a cued one of a type it outranks or equals redundant:
        # overlap resolution would drop it.  The cue searches are the dear part.
        taken = min((RANK[s[2]] for s in out if s[0] == start and s[1] == end), default=_UNTAKEN)
        if taken <= _SSN_RANK:
            continue
        reach = max(0, start - _CUE_REACH)
        if (
            len(number) == 9
            and number.isdigit()
            and valid_ssn(number[:3], number[3:5], number[5:])
            and (SSN_CUE.search(text, reach, start) or SSN_CUE_AFTER.match(text, end))
        ):
            out.append((start, end, PiiType.SSN))
            continue
        if taken <= _PHONE_RANK:
            continue
        digits = digit_count(number)
        if (
            7 <= digits <= 15
            and not _DATE_LIKE.fullmatch(number)
            and (
                PHONE_CUE_AFTER.match(text, end)
                or (_near_cue_word(text, reach, start) and PHONE_CUE.search(text, reach, start))
            )
        ):
            out.append((start, end, PiiType.PHONE))


_SSN_RANK: Final = RANK[PiiType.SSN]
_PHONE_RANK: Final = RANK[PiiType.PHONE]
_UNTAKEN: Final = len(RANK)


def numbers(text: str, out: list[Span], vocabulary: frozenset[str]) -> frozenset[str] | None:
    """The number-shaped rules, run around each island that could hold one.

    Without a cue word among the words of ``text``, no bare number is looked
    at.  The words (those in ``vocabulary``, a superset of ``CUE_WORDS``) are
    looked up at the first island long enough to need them, and returned for
    the name rules; None if no island needed them.
    """
    size, words = len(text), None
    for island in _ISLAND.finditer(text):
        start, end, chunk = island.start(), island.end(), island[0]
        # A legacy Bitcoin address's first letter ends the island it starts in
        # (or the address is 26 digits and more, all in the island).
        # It runs on past the island only from the island's last character, a
        # digit 1-9 (Base58 has no 0 and no separators).
        if ("1" in chunk or "3" in chunk) and (
            (end < size and text[end] in B58_LETTERS and text[end - 1] in _B58_DIGITS) or len(chunk) >= 26
        ):
            btc_legacy(text, start, end, out)
        # An IBAN's check digits always open an island, right after the country.
        if start > 1 and text[start - 1] in _LETTERS:
            iban = iban_at(text, start - 2)
            if iban is not None:
                out.append(iban)
        if len(chunk) < 7:  # "1.2.3.4" is the shortest number any rule takes
            continue
        digits = len(chunk.encode().translate(None, _NOT_DIGITS_BYTES))  # an island is ASCII
        if digits < 4:
            continue
        # Two characters either side: the "+" or "(" that opens a phone number,
        # and what the patterns' boundary look-arounds inspect.
        lo, hi = (start - 2 if start > 2 else 0), (end + 2 if end + 2 < size else size)
        # Each rule needs at least so many digits: the island holds them all.
        if chunk.count(".") >= 3:
            ipv4s(text, lo, hi, out)
        if digits >= 8 and text.find("+", lo, end) >= 0:
            international_phones(text, lo, hi, out)
        if digits >= 9:
            core = chunk.rstrip(_NOT_DIGITS)
            spaced = " " in core
            # "(" opens some national forms, in the island or right before it.
            paren = "(" in chunk or text[start - 1 : start] == "("
            if spaced or "-" in core:  # 123-45-6789, 123 45 6789
                ssns(text, lo, hi, out)
            if spaced or paren or "-" in core or "." in core or "/" in core:
                national_phones(text, lo, hi, out)
            if "00" in chunk:
                idd_phones(text, lo, hi, out)
            # A space in the island, as ever (a trailing one too), and one
            # between its digits or a "(" for the pattern to use.
            if " " in chunk and (spaced or paren):
                grouped_phones(text, lo, hi, out)
        if digits >= 13:
            cards(text, lo, hi, out)
        if digits >= 7:
            if words is None:
                words = words_in(text, vocabulary)
            if not CUE_WORDS.isdisjoint(words):
                _cued_numbers(text, lo, hi, out)
    return words
