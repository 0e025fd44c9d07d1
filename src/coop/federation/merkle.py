"""Merkle roots over a bucket's entries (RFC 6962 hashing: domain-separated leaves and nodes).

A peer holding a manifest can check any entry against the signed root; the
root also lets two nodes compare buckets without comparing every entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

__all__ = ["EMPTY_ROOT", "leaf_hash", "merkle_root"]

EMPTY_ROOT: Final = hashlib.sha256(b"").hexdigest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def merkle_root(leaves: Sequence[bytes]) -> str:
    """The root of the leaves' hashes; an odd node is promoted to the next level unchanged."""
    if not leaves:
        return EMPTY_ROOT
    level = [leaf_hash(leaf) for leaf in leaves]
    sha = hashlib.sha256
    while len(level) > 1:
        nxt = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].hex()
