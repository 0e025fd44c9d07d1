"""The redactor's vocabulary: the types it finds, a hit, the result, and shared boundaries."""

from __future__ import annotations

import enum
import re
from typing import Final

import msgspec

__all__ = [
    "ASCII_DIGIT",
    "NOT_DIGITS",
    "NUM_LEFT",
    "NUM_RIGHT",
    "RANK",
    "Hit",
    "PiiType",
    "Redaction",
    "Span",
    "digit_count",
    "folded_first",
    "words_in",
]


class PiiType(enum.StrEnum):
    """The kinds of personal data the redactor finds; the value names it in counts and JSON."""

    EMAIL = "email"
    IPV4 = "ipv4"
    IPV6 = "ipv6"
    SSN = "ssn"  # US social security number
    IBAN = "iban"
    ETH_ADDRESS = "eth_address"
    BTC_ADDRESS = "btc_address"
    PHONE = "phone"
    CARD_NUMBER = "card_number"
    PERSON_NAME = "person_name"

    @property
    def placeholder(self) -> str:
        """The text that replaces a hit of this type, e.g. ``[EMAIL]``."""
        return "[NAME]" if self is PiiType.PERSON_NAME else f"[{self.name}]"


class Hit(msgspec.Struct, frozen=True):
    """One piece of personal data: ``text[start:end]`` of the original text."""

    start: int
    end: int
    type: PiiType


class Redaction(msgspec.Struct, frozen=True):
    """The redacted text and what was replaced in it (offsets into the original)."""

    text: str
    hits: tuple[Hit, ...] = ()

    @property
    def total(self) -> int:
        """How many pieces were replaced."""
        return len(self.hits)

    def counts(self) -> dict[str, int]:
        """Hits per type value, only types that occur, keys sorted."""
        counts: dict[str, int] = {}
        for hit in self.hits:
            counts[hit.type.value] = counts.get(hit.type.value, 0) + 1
        return dict(sorted(counts.items()))


# A candidate before overlap resolution: (start, end, type).
Span = tuple[int, int, PiiType]

# Overlaps keep the longer hit; on equal length the more specific type (lower
# rank) wins: checksum-validated types first, cue- or shape-based ones last.
RANK: Final[dict[PiiType, int]] = {
    PiiType.IBAN: 0,
    PiiType.CARD_NUMBER: 1,
    PiiType.BTC_ADDRESS: 2,
    PiiType.ETH_ADDRESS: 3,
    PiiType.EMAIL: 4,
    PiiType.IPV6: 5,
    PiiType.IPV4: 6,
    PiiType.SSN: 7,
    PiiType.PHONE: 8,
    PiiType.PERSON_NAME: 9,
}

# Boundaries.  Every pattern refuses to start right after "]" or to end right
# before "[", as it refuses a word character there: a placeholder's brackets
# then block exactly what the replaced text's own characters blocked, so
# redacting a neighbour can never unlock a new hit (idempotence).  Cue words
# also refuse "[" before and "]" after them, so "[SSN]" and "[PHONE]" are not cues.
NUM_LEFT: Final = r"(?<![\w\]+\#/.,=-])"  # not inside a word, number, path or amount
NUM_RIGHT: Final = r"(?![\w\[]|[.,/-][0-9\[])"  # and not continued by one

NOT_DIGITS: Final = str.maketrans("", "", "0123456789")


def digit_count(text: str) -> int:
    """How many ASCII digits ``text`` holds."""
    return len(text) - len(text.translate(NOT_DIGITS))


ASCII_DIGIT: Final = re.compile(r"[0-9]")


# Every ASCII character but a letter ends a word, the apostrophe too ("i'm" is
# "i" and "m"); beyond ASCII a word is a run of letters, "’" kept inside it.
_SEPARATORS: Final = [c for c in range(128) if not chr(c).isalpha()]
_ASCII_SEPARATORS: Final = bytes.maketrans(bytes(_SEPARATORS), b" " * len(_SEPARATORS))
_WORD: Final = re.compile(r"[^\W\d_]+(?:’[^\W\d_]+)*")


def words_in(text: str, vocabulary: frozenset[str]) -> frozenset[str]:
    """The words of ``text`` (case-folded) that are in ``vocabulary``: the cue words it holds.

    casefold, not lower: the cue patterns match case-insensitively, and "ſ"
    (long s) matches "s" there.  And a word ends wherever a cue pattern's
    boundary may fall.  The gates must never be stricter than the patterns.
    """
    folded = text.casefold()
    if folded.isascii():
        return vocabulary.intersection(folded.encode().translate(_ASCII_SEPARATORS).decode().split())
    # No ASCII character but a letter is a letter or "’", so the runs of letters
    # are the same words as the split on ASCII separators would give.
    return vocabulary.intersection(_WORD.findall(folded))


# What ``(?i:x)`` matches for an ASCII letter x beyond x and X (Python's re docs).
_FOLDS: Final = {"i": "İı", "k": "\u212a", "s": "ſ"}


def folded_first(alternatives: list[str]) -> str:
    """Case-insensitive ``alternatives`` (patterns that open with an ASCII letter) as one group.

    Each opens with its first letter as a class of exactly what ``(?i:)`` matches
    for it, the rest in ``(?i:...)``: the engine then rules an alternative out on
    its first character without entering it, which it does not for a letter
    under ``(?i)``.  Same matches, a fraction of the work where a pattern is
    tried at every position.
    """
    parts = []
    for alternative in alternatives:
        first, rest = alternative[0].lower(), alternative[1:]
        if not (first.isascii() and first.isalpha()):
            raise ValueError(f"an alternative must open with an ASCII letter: {alternative!r}")
        parts.append(f"[{first}{first.upper()}{_FOLDS.get(first, '')}](?i:{rest})")
    return "(?:" + "|".join(parts) + ")"
