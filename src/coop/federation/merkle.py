"""Merkle roots over a bucket's entries (RFC 6962 hashing: domain-separated leaves and nodes).

A peer holding a manifest can check any entry against the signed root; the
root also lets two nodes compare buckets without comparing every entry.

The root pairs nodes level by level and promotes an odd last node, which is RFC 6962's
tree: the node at level ``k``, index ``j`` covers leaves ``[j * 2**k, (j + 1) * 2**k)``.
:class:`MerkleTree` keeps every level of that tree over leaves sorted by key, so a change
re-roots without rehashing the rest: a replaced leaf costs one path (log n hashes); an
inserted or removed leaf shifts every leaf after it, and every node covering a shifted
position is new, so it costs about ``2 * (n - p)`` hashes for the first changed position
``p``.  Keys are time-ordered uids, so new records land at the end (``p`` = n): log n.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from heapq import merge
from typing import Final

__all__ = ["EMPTY_ROOT", "MerkleTree", "TreePlan", "leaf_hash", "merkle_root"]

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


_SHA: Final = hashlib.sha256
_W: Final = 32  # bytes per node


def _pairs(src: bytes) -> bytes:
    """The next level over ``src`` (nodes of 32 bytes, starting at an even index)."""
    n = len(src) // _W
    out = bytearray()
    for off in range(0, (n - 1) * _W, 2 * _W):
        out += _SHA(b"\x01" + src[off : off + 2 * _W]).digest()
    if n % 2:
        out += src[-_W:]
    return bytes(out)


class TreePlan:
    """A change worked out against a :class:`MerkleTree` without touching it: the new root,
    and per level what to splice in (the nodes from ``lows[k]`` on, and single nodes below)."""

    __slots__ = ("base", "count", "keys", "lows", "root", "sparse", "tails")

    def __init__(
        self,
        base: int,
        count: int,
        keys: list[str] | None,
        lows: list[int],
        tails: list[bytes],
        sparse: list[dict[int, bytes]],
        root: str,
    ) -> None:
        self.base = base  # the tree's version the plan was made against
        self.count = count
        self.keys = keys  # the keys from lows[0] on (None: no key moved)
        self.lows = lows
        self.tails = tails
        self.sparse = sparse
        self.root = root


class MerkleTree:
    """:func:`merkle_root` over leaves sorted by key, kept incrementally (see the module doc).

    Leaves are given by their hash (:func:`leaf_hash`).  :meth:`plan` works a change out
    (``upserts`` key -> leaf hash; ``removals`` win over upserts of the same key) and
    :meth:`commit` applies it: a caller can check the new root before keeping it.
    """

    __slots__ = ("keys", "levels", "version")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.levels: list[bytearray] = [bytearray()]
        self.version = 0

    @classmethod
    def build(cls, leaves: Iterable[tuple[str, bytes]]) -> MerkleTree:
        tree = cls()
        tree.commit(tree.plan(dict(leaves), ()))
        return tree

    def __len__(self) -> int:
        return len(self.keys)

    def root(self) -> str:
        return self.levels[-1][:_W].hex() if self.keys else EMPTY_ROOT

    def plan(self, upserts: Mapping[str, bytes], removals: Iterable[str]) -> TreePlan:
        keys, levels = self.keys, self.levels
        n = len(keys)
        gone: set[int] = set()
        removed = set(removals)
        for key in removed:
            i = bisect_left(keys, key)
            if i < n and keys[i] == key:
                gone.add(i)
        low = min(gone, default=n)
        replaced: dict[int, bytes] = {}
        inserted: list[tuple[str, bytes]] = []
        if not n:
            inserted = [(key, digest) for key, digest in upserts.items() if key not in removed]
            low = 0
        for key, digest in upserts.items() if n else ():
            if key in removed:
                continue
            i = bisect_left(keys, key)
            if i < n and keys[i] == key:
                replaced[i] = digest
            else:
                inserted.append((key, digest))
                if i < low:
                    low = i
        level0 = levels[0]
        new_keys: list[str] | None = None
        tail0 = b""
        count = n
        if low < n or inserted:
            inserted.sort()
            kept = [
                (keys[i], replaced.get(i) or bytes(level0[i * _W : (i + 1) * _W]))
                for i in range(low, n)
                if i not in gone
            ]
            merged = list(merge(kept, inserted))
            new_keys = [k for k, _ in merged]
            tail0 = b"".join(d for _, d in merged)
            count = low + len(merged)
        lows = [low]
        tails = [tail0]
        sparse = [{i: d for i, d in replaced.items() if i < low}]
        size = count
        k = 0
        while True:
            old = levels[k] if k < len(levels) else bytearray()
            lo, tail, dots = lows[k], tails[k], sparse[k]

            def node(
                i: int, old: bytearray = old, lo: int = lo, tail: bytes = tail, dots: dict[int, bytes] = dots
            ) -> bytes:
                if i >= lo:
                    return tail[(i - lo) * _W : (i - lo + 1) * _W]
                return dots.get(i) or bytes(old[i * _W : (i + 1) * _W])

            if size <= 1:
                root = node(0).hex() if size else EMPTY_ROOT
                break
            up_lo = lo >> 1
            up_dots: dict[int, bytes] = {}
            for i in sorted({i >> 1 for i in dots}):
                if i < up_lo:
                    left, right = node(2 * i), node(2 * i + 1) if 2 * i + 1 < size else b""
                    up_dots[i] = _SHA(b"\x01" + left + right).digest() if right else left
            lows.append(up_lo)
            tails.append(_pairs((node(lo - 1) if lo % 2 else b"") + tail))
            sparse.append(up_dots)
            size = (size + 1) // 2
            k += 1
        return TreePlan(self.version, count, new_keys, lows, tails, sparse, root)

    def commit(self, plan: TreePlan) -> None:
        if plan.base != self.version:
            raise ValueError("the plan was made against another version of the tree")
        if plan.keys is not None:
            self.keys[plan.lows[0] :] = plan.keys
        depth = len(plan.lows)
        while len(self.levels) < depth:
            self.levels.append(bytearray())
        del self.levels[depth:]
        for level, lo, tail, dots in zip(self.levels, plan.lows, plan.tails, plan.sparse, strict=True):
            if lo * _W < len(level) or tail:
                level[lo * _W :] = tail
            for i, digest in dots.items():
                level[i * _W : (i + 1) * _W] = digest
        self.version += 1
