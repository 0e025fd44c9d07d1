"""US social security numbers: grouped ones by shape, bare nine digits only next to a cue."""

from __future__ import annotations

import re
from typing import Final

from coop.node.intake.redaction._model import NUM_LEFT, PiiType, Span

__all__ = ["SSN_CUE", "SSN_CUE_AFTER", "ssns", "valid_ssn"]

_SSN: Final = re.compile(
    rf"{NUM_LEFT}([0-9]{{3}})([ -])([0-9]{{2}})\2([0-9]{{4}})(?![\w\[]|[.,/-][0-9\[]|\2[0-9\[])"
)

FILLERS: Final = r"(?:[ \t]*(?i:is|was|number|no\.?|nr\.?|num|\#|:|=|-))*+[ \t]*\Z"
SSN_CUE: Final = re.compile(r"(?i:(?<![\w\[\]])(?:ssn|social[ \t]+security)(?![\w\[\]]))" + FILLERS)
# "put 123456789 in the SSN box": the cue right after the number.
SSN_CUE_AFTER: Final = re.compile(
    r"(?i:[ \t]+(?:in|into|for|as|is)[ \t]+(?:(?:the|my|your|his|her|their)[ \t]+)?"
    r"(?:ssn|social[ \t]+security)(?![\w\[\]]))"
)


def valid_ssn(area: str, group: str, serial: str) -> bool:
    """SSA rules: area not 000, 666 or 9xx; group not 00; serial not 0000."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def ssns(text: str, lo: int, hi: int, out: list[Span]) -> None:
    for m in _SSN.finditer(text, lo, hi):
        if valid_ssn(m[1], m[3], m[4]):
            out.append((m.start(), m.end(), PiiType.SSN))
