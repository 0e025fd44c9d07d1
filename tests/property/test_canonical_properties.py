"""Canonical bytes: deterministic, sorted, and equal to a plain JCS rendering for safe values."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from coop.governance import MAX_SAFE_INTEGER, canonical_bytes

_KEYS = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=8)
_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20),
)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_KEYS, inner, max_size=4)),
    max_leaves=20,
)


def _jcs(value: object) -> bytes:
    # For ASCII keys and integers, RFC 8785 is sorted keys, no spaces, UTF-8 output.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@given(_VALUES)
def test_canonical_bytes_equals_jcs_for_safe_values(value: object) -> None:
    assert canonical_bytes(value) == _jcs(value)


@given(st.dictionaries(_KEYS, _LEAVES, max_size=6))
def test_canonical_bytes_ignores_insertion_order(value: dict[str, object]) -> None:
    reordered = dict(reversed(list(value.items())))
    assert canonical_bytes(value) == canonical_bytes(reordered)
