"""The canonical encoder: sorted keys, no floats, safe integers, ASCII keys."""

from __future__ import annotations

import msgspec
import pytest

from coop.governance import InvalidValueError, canonical_bytes, sha256_hex


class Point(msgspec.Struct):
    y: int
    x: int


def test_canonical_bytes_sorts_keys_of_structs_and_dicts() -> None:
    assert canonical_bytes({"b": 1, "a": Point(y=2, x=1)}) == b'{"a":{"x":1,"y":2},"b":1}'


def test_canonical_bytes_known_vector_matches_rfc8785() -> None:
    # RFC 8785 section 3.2.3 orders by UTF-16 code units; for ASCII keys that is byte order.
    value = {
        "numbers": [333333333, 4, 2**53 - 1, 0, -1],
        "string": '€$\u000f\nA\'B"\\\\"/',
        "literals": [None, True, False],
    }
    expected = (
        b'{"literals":[null,true,false],"numbers":[333333333,4,9007199254740991,0,-1],'
        b'"string":"\xe2\x82\xac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_bytes(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"a": 1.5}, id="float"),
        pytest.param({"a": 2**53}, id="integer-at-2^53"),
        pytest.param({"a": [-(2**60)]}, id="large-negative"),
        pytest.param({"ключ": 1}, id="non-ascii-key"),
    ],
)
def test_canonical_bytes_outside_rules_is_refused(value: object) -> None:
    with pytest.raises(InvalidValueError):
        canonical_bytes(value)


def test_sha256_hex_is_lowercase_hex() -> None:
    digest = sha256_hex(b"abc")
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
