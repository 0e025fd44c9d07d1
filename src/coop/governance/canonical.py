"""The one canonical encoder: deterministic JSON bytes for hashing and signing.

Within simple rules the output is byte-for-byte RFC 8785 (JCS): keys sorted
(msgspec ``order="sorted"``), no floats, ASCII keys, integers below 2**53.
``canonical_bytes`` checks the rules instead of trusting callers.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import msgspec

from coop.governance.errors import InvalidValueError

__all__ = ["MAX_SAFE_INTEGER", "canonical_bytes", "sha256_hex"]

MAX_SAFE_INTEGER: Final = 2**53 - 1

_ENCODER: Final = msgspec.json.Encoder(order="sorted")


def canonical_bytes(value: Any) -> bytes:
    """Encode ``value`` canonically, refusing anything outside the JCS-safe subset."""
    data = _ENCODER.encode(value)
    # Round-trip through builtins to check the rules on what was actually written.
    _check(msgspec.json.decode(data), "$")
    return data


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check(value: Any, path: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise InvalidValueError(f"integer at {path} is not below 2**53", field=path)
        return
    if isinstance(value, float):
        raise InvalidValueError(f"float at {path} has no canonical form here", field=path)
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not key.isascii():
                raise InvalidValueError(f"non-ASCII key {key!r} at {path}", field=path)
            _check(item, f"{path}.{key}")
        return
    raise InvalidValueError(f"unsupported value at {path}", field=path)  # pragma: no cover
