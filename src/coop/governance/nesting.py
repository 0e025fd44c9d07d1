"""How deep a JSON text nests, read before any parser recurses into it.

Parsers (msgspec, the standard library) recurse once per level and stop at the
interpreter's recursion limit, which differs between Pythons (about 1,000 levels on 3.11,
1,500 on 3.12, 10,000 on 3.13): the same input would be refused on one and accepted on
another.  Every reader of untrusted JSON asks :func:`json_too_deep` first instead, against
one bound, :data:`MAX_JSON_DEPTH`, and refuses with :data:`NESTED_TOO_DEEP`.

The count is linear and runs in C (a regular expression, a translation table and
``itertools.accumulate``); a text with fewer brackets than the bound skips it.
"""

from __future__ import annotations

import re
from array import array
from itertools import accumulate
from typing import Final

__all__ = ["MAX_JSON_DEPTH", "NESTED_TOO_DEEP", "json_depth", "json_too_deep"]

MAX_JSON_DEPTH: Final = 128
"""Arrays and objects inside one another (``[]`` is 1, ``{"a": []}`` is 2).  No document the
node reads comes near (an Open WebUI chat keeps its message tree flat, keyed by id); serde_json
uses the same bound, and it stays far below the smallest recursion limit of any Python."""

NESTED_TOO_DEEP: Final = f"JSON nested too deep (over {MAX_JSON_DEPTH} levels of arrays and objects)"

# A string, to its closing quote or to the end of its line (JSON strings hold no raw newline):
# the pattern never fails once it has started, so the scan stays linear on any input.
_STRING: Final = re.compile(rb'"[^"\\\n]*+(?:\\[^\n]?[^"\\\n]*+)*+(?:"|$)', re.MULTILINE)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_NOT_STRUCTURE: Final = bytes(b for b in range(256) if b not in b'[]{}"\n')
# An opener counts +1, a closer -1 (0xff read as a signed byte).
_STEPS: Final = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def _levels(data: bytes | str) -> accumulate[int]:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if b"\\" not in raw:
        # Without a backslash a string runs from a quote to the next quote (or its line's end), so
        # only quotes, newlines and brackets matter, and an empty string left behind ("" : an
        # empty string, or two strings side by side) goes too.  What is left for the pattern is
        # about a bracket per container instead of every string of the text.
        raw = raw.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    return accumulate(array("b", _STRING.sub(b"", raw).translate(_STEPS, _NOT_BRACKETS)))


def json_depth(data: bytes | str) -> int:
    """The deepest nesting of arrays and objects in ``data`` read as one document, undecoded.

    Exact for JSON; for text that is not, at least the depth a parser reaches before it fails
    (a parser stops at a closer with nothing open).  Each line of NDJSON is its own document.
    """
    return max(0, max(_levels(data), default=0))


def json_too_deep(data: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``data``, read as one document, nests arrays and objects over ``limit`` deep."""
    if isinstance(data, str):
        openers = data.count("[") + data.count("{")
    else:
        openers = data.count(b"[") + data.count(b"{")
    # The first level over the limit ends the scan (filter and accumulate run in C).
    return openers > limit and next(filter(limit.__lt__, _levels(data)), None) is not None
