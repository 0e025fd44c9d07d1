"""Record keys of Bluesky posts: valid TIDs, the same for the same release and post."""

from __future__ import annotations

import re

import pytest

from coop.node.channels.bluesky import post_rkey

TID = re.compile(r"[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}")
_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"


def _decode(tid: str) -> int:
    value = 0
    for char in tid:
        value = value * 32 + _ALPHABET.index(char)
    return value


def test_post_rkey_is_a_tid_of_the_release_time_and_post() -> None:
    key = post_rkey(created_at=1_700_000_000, version=3, seq=None)
    assert TID.fullmatch(key)
    assert _decode(key) == (1_700_000_000 * 1_000_000) << 10 | 3
    assert _decode(post_rkey(created_at=1_700_000_000, version=3, seq=41)) >> 10 == 1_700_000_000_000_042


def test_post_rkey_is_stable_and_distinct() -> None:
    keys = {post_rkey(created_at=1_700_000_000, version=v, seq=s) for v in (1, 2) for s in (None, 0, 1, 7)}
    assert len(keys) == 8
    assert post_rkey(created_at=5, version=1, seq=2) == post_rkey(created_at=5, version=1, seq=2)
    # sortable: later releases sort later
    assert post_rkey(created_at=6, version=2, seq=None) > post_rkey(created_at=5, version=1, seq=9)


def test_post_rkey_refuses_what_does_not_fit_53_bits() -> None:
    with pytest.raises(ValueError, match="no TID"):
        post_rkey(created_at=10**10, version=1, seq=None)


def test_post_rkey_two_coops_in_the_same_second_ask_for_different_keys() -> None:
    """Two co-ops posting to one account, releases cut in the same second: the node's number in
    the clock id keeps their keys apart (a key taken by another's post would be read as ours)."""
    a = post_rkey(created_at=1_750_000_000, version=1, seq=None, node_id="a" * 64)
    b = post_rkey(created_at=1_750_000_000, version=1, seq=None, node_id="b" * 64)
    assert a != b and TID.fullmatch(a) and TID.fullmatch(b)
    assert a == post_rkey(created_at=1_750_000_000, version=1, seq=None, node_id="a" * 64)
