"""Run every rule, resolve overlaps, replace the hits."""

from __future__ import annotations

import bisect
from typing import Final

from coop.node.intake.redaction._finance import cryptos
from coop.node.intake.redaction._model import ASCII_DIGIT, RANK, Hit, PiiType, Redaction, Span
from coop.node.intake.redaction._names import NAME_WORDS, names
from coop.node.intake.redaction._network import emails, ipv6s
from coop.node.intake.redaction._numbers import CUE_WORDS, numbers

__all__ = ["redact"]

# The cue words of every rule: a text's words are looked up at most once.
_WORDS: Final = NAME_WORDS | CUE_WORDS
# Deleting the digits from an ASCII text tells whether it has any quicker than a search.
_DIGITS: Final = b"0123456789"
# Looked up once: the enum property costs a call per hit.
_PLACEHOLDERS: Final = {kind: kind.placeholder for kind in PiiType}


def _resolve(spans: list[Span]) -> list[Span]:
    """Non-overlapping spans sorted by start: longer first, then the more specific type."""
    if len(spans) == 1:  # the common case: nothing to resolve
        return spans
    starts: list[int] = []
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (s[0] - s[1], RANK[s[2]], s[0])):
        start, end, _ = span
        i = bisect.bisect_right(starts, start)
        if (i and kept[i - 1][1] > start) or (i < len(kept) and kept[i][0] < end):
            continue
        starts.insert(i, start)
        kept.insert(i, span)
    return kept


def redact(text: str) -> Redaction:
    """Replace every piece of personal data in ``text`` with its type's placeholder."""
    spans: list[Span] = []
    if "@" in text:
        emails(text, spans)
    if ":" in text:
        ipv6s(text, spans)
    words: frozenset[str] | None = None  # looked up by the first rule that needs them
    has_digit = (
        len(text.encode().translate(None, _DIGITS)) != len(text)
        if text.isascii()
        else ASCII_DIGIT.search(text)
    )
    if has_digit:
        words = numbers(text, spans, _WORDS)
        cryptos(text, spans)
    names(text, spans, words, _WORDS)
    if not spans:
        return Redaction(text=text)
    kept = _resolve(spans)
    parts: list[str] = []
    pos = 0
    for start, end, kind in kept:
        parts += (text[pos:start], _PLACEHOLDERS[kind])
        pos = end
    parts.append(text[pos:])
    return Redaction(
        text="".join(parts),
        hits=tuple(Hit(start, end, kind) for start, end, kind in kept),
    )
