"""Whole numbers in paths, queries and forms: ASCII digits only, in canonical form, within bounds.

Python's ``int()`` and ``str.isdigit()`` accept any Unicode digit (``int("٣") == 3``,
``"¹".isdigit()``) and any length, so the framework's ``{x:int}`` converter lets
``/releases/v٣`` alias ``v3`` and a 30-digit id reach SQLite (an ``OverflowError``, a 500).
Routes therefore take such parameters as text and read them here; the OpenAPI document
still describes them as bounded integers (``schema_extra``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from litestar.openapi.spec import OpenAPIType
from litestar.params import Parameter

from coop.node.errors import InputError, NodeError, NotFoundError

__all__ = [
    "MAX_WHOLE",
    "IdPath",
    "release_version",
    "whole_number",
    "whole_query",
]

MAX_WHOLE: Final = 2**53 - 1  # the largest integer every JSON reader keeps exactly
_CANONICAL: Final = re.compile(r"0|[1-9][0-9]{0,15}")  # ASCII only: [0-9] is not \d


def whole_number(
    text: str,
    *,
    field: str,
    low: int = 0,
    high: int = MAX_WHOLE,
    error: type[NodeError] = InputError,
) -> int:
    """``text`` as an integer from ``low`` to ``high`` written in ASCII digits, or ``error`` naming ``field``."""
    if _CANONICAL.fullmatch(text) is None or not low <= (number := int(text)) <= high:
        shown = text[:24] + ("..." if len(text) > 24 else "")
        raise error(f"{field} is a whole number from {low} to {high} (got {shown!r})", field=field)
    return number


def release_version(text: str, *, field: str = "version", error: type[NodeError] = NotFoundError) -> int:
    """``v3`` or ``3`` as 3; anything else (``v٣``, ``v03``, ``v¹``) is not a release."""
    digits = text[1:] if text.startswith("v") else text
    if _CANONICAL.fullmatch(digits) is None or not 1 <= int(digits) <= MAX_WHOLE:
        shown = text[:24] + ("..." if len(text) > 24 else "")
        raise error(f"{shown!r} is not a release (they are named v1, v2, ...)", field=field)
    return int(digits)


def whole_query(description: str, *, low: int = 0, high: int = MAX_WHOLE, default: int = 0) -> Any:
    """A query parameter (text, for :func:`whole_number`) declared an integer from low to high."""
    extra = {"type": OpenAPIType.INTEGER, "minimum": low, "maximum": high, "default": default}
    return Parameter(description=description, schema_extra=extra)


# A path id read with whole_number (declared an integer from 1 in the OpenAPI document).
IdPath = Annotated[
    str,
    Parameter(
        description="a whole number in ASCII digits, 1 to 2^53-1",
        schema_extra={"type": OpenAPIType.INTEGER, "minimum": 1, "maximum": MAX_WHOLE},
    ),
]
