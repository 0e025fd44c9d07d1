"""The fast JSON checks give the answers of the old ones on every input (issue 14).

``json_depth``/``json_too_deep`` now drop everything but quotes, newlines and brackets before the
string pattern when a text holds no backslash; ``duplicate_key_of`` answers None without parsing
when a decoded value re-encodes to the very bytes.  The old implementations are copied here.
"""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from coop.governance.canonical import duplicate_key, duplicate_key_of
from coop.governance.nesting import json_depth, json_too_deep

# --- the old nesting scan, as it was --------------------------------------------------------------
_OLD_STRING = re.compile(rb'"[^"\\\n]*+(?:\\[^\n]?[^"\\\n]*+)*+(?:"|$)', re.MULTILINE)
_OLD_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OLD_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def _old_levels(data: bytes | str) -> accumulate[int]:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return accumulate(array("b", _OLD_STRING.sub(b"", raw).translate(_OLD_STEPS, _OLD_NOT_BRACKETS)))


def old_json_depth(data: bytes | str) -> int:
    return max(0, max(_old_levels(data), default=0))


def old_json_too_deep(data: bytes | str, limit: int) -> bool:
    return next(filter(limit.__lt__, _old_levels(data)), None) is not None


# Any text at all over the characters that matter (quotes, escapes, newlines, brackets).
_NEAR_JSON = st.text(alphabet=st.sampled_from('ab1 :,[]{}""\\\\\n\t\u00e9\u2028'), max_size=60)


@settings(max_examples=1500)
@given(_NEAR_JSON, st.integers(min_value=0, max_value=6))
def test_depth_matches_the_old_scan_on_any_text(text: str, limit: int) -> None:
    for data in (text, text.encode()):
        assert json_depth(data) == old_json_depth(data)
        assert json_too_deep(data, limit) == old_json_too_deep(data, limit)


_KEY = st.text(alphabet=st.sampled_from('ab"\\[]{}\n\u00e9'), max_size=4)
_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | _KEY,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEY, inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=500)
@given(_VALUE, st.sampled_from([None, 1]), st.booleans())
def test_depth_matches_the_old_scan_on_json(value: Any, indent: int | None, ascii_only: bool) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    for data in (text, text.encode(), msgspec.json.encode(value)):
        assert json_depth(data) == old_json_depth(data)


def _with_repeats(value: Any, draw: st.DrawFn) -> str:
    """``value`` as JSON text, some objects given a key twice (written plainly or escaped)."""
    if isinstance(value, list):
        return "[" + ",".join(_with_repeats(v, draw) for v in value) + "]"
    if isinstance(value, dict):
        members = [(json.dumps(k), _with_repeats(v, draw)) for k, v in value.items()]
        if members and draw(st.booleans()):
            key, _ = members[draw(st.integers(0, len(members) - 1))]
            plain = json.loads(key)
            spelled = draw(st.sampled_from([key, json.dumps(plain, ensure_ascii=True), _escaped(plain)]))
            members.insert(draw(st.integers(0, len(members))), (spelled, _with_repeats(draw(_VALUE), draw)))
        return "{" + ",".join(f"{k}:{v}" for k, v in members) + "}"
    return json.dumps(value)


def _escaped(key: str) -> str:
    """Every character as a \\u escape: "a" and "\\u0061" are the same key."""
    return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else c for c in key) + '"'


@st.composite
def _texts(draw: st.DrawFn) -> bytes:
    value = draw(_VALUE)
    if draw(st.booleans()):
        return msgspec.json.encode(value, order="sorted")  # canonical: the fast answer
    return _with_repeats(value, draw).encode()


def _decoded(data: bytes) -> object:
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None


@settings(max_examples=1500)
@given(_texts())
def test_duplicate_key_of_answers_as_duplicate_key(data: bytes) -> None:
    try:
        expected: object = duplicate_key(data)
    except ValueError:
        expected = ValueError
    try:
        got: object = duplicate_key_of(data, _decoded(data))
    except ValueError:
        got = ValueError
    assert got == expected


@settings(max_examples=300)
@given(_NEAR_JSON)
def test_duplicate_key_of_answers_as_duplicate_key_on_any_text(text: str) -> None:
    data = text.encode()
    outcomes = []
    for check in (lambda: duplicate_key(data), lambda: duplicate_key_of(data, _decoded(data))):
        try:
            outcomes.append(check())
        except ValueError:
            outcomes.append(ValueError)
    assert outcomes[0] == outcomes[1]


def test_escaped_and_plain_spellings_of_one_key_are_one_key() -> None:
    data = b'{"a": 1, "\\u0061": 2}'
    assert duplicate_key_of(data, _decoded(data)) == duplicate_key(data) == "a"
    canonical = b'{"a":{"b":[1,{"c":2}]}}'
    assert duplicate_key_of(canonical, _decoded(canonical)) is None
