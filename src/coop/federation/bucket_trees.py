"""One origin's bucket roots, kept incrementally: a :class:`~coop.federation.merkle.MerkleTree`
per licence bucket, so a manifest's roots are checked at the cost of what it changes.

The roots are exactly :func:`coop.federation.manifest.bucket_roots` of the folded set (the
tests compare them for random changes); a book store keeps one :class:`BucketTrees` per origin.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import msgspec

from coop.federation.manifest import BucketRoot, Entry, Tombstone
from coop.federation.merkle import MerkleTree, TreePlan
from coop.governance import License

__all__ = ["BucketTrees", "RootsPlan", "entry_leaf", "touched_uids"]

_SHA: Final = hashlib.sha256


_ENCODE: Final = msgspec.json.Encoder()
_DEFAULTED: Final = b",[],null]"  # an array-like entry's trailing defaulted tags and language


def entry_leaf(entry: Entry) -> bytes:
    """The leaf hash of an entry in its bucket's tree: of :func:`~coop.federation.manifest.entry_bytes`, made here from
    the struct's own encoding (msgspec writes the defaulted trailing tags and language, which
    ``entry_bytes`` leaves out: cut here), without building a tuple per entry."""
    data = _ENCODE.encode(entry)
    if data.endswith(_DEFAULTED) and not entry.tags and entry.language is None:
        data = data[: -len(_DEFAULTED)] + b"]"
    return _SHA(b"\x00" + data).digest()


def touched_uids(added: Iterable[Entry], tombstones: Iterable[Tombstone]) -> list[str]:
    """The uids a manifest changes (whose stored entries a plan needs to see)."""
    return list(dict.fromkeys([e.uid for e in added] + [t.uid for t in tombstones]))


class RootsPlan:
    """A worked-out change of every bucket, with the roots it leads to; kept by :meth:`BucketTrees.commit`."""

    __slots__ = ("plans", "roots")

    def __init__(self, plans: dict[License, TreePlan], roots: tuple[BucketRoot, ...]) -> None:
        self.plans = plans
        self.roots = roots


class BucketTrees:
    """Per licence bucket, the Merkle tree of one origin's folded entries."""

    __slots__ = ("trees",)

    def __init__(self) -> None:
        self.trees: dict[License, MerkleTree] = {licence: MerkleTree() for licence in License}

    @classmethod
    def build(cls, entries: Iterable[Entry]) -> BucketTrees:
        """From a whole set (any order)."""
        by_licence: dict[License, list[tuple[str, bytes]]] = {licence: [] for licence in License}
        for entry in entries:
            by_licence[entry.license].append((entry.uid, entry_leaf(entry)))
        out = cls()
        for licence, leaves in by_licence.items():
            out.trees[licence] = MerkleTree.build(leaves)
        return out

    @classmethod
    def from_leaves(cls, leaves: Mapping[License, Sequence[tuple[str, bytes]]]) -> BucketTrees:
        out = cls()
        for licence, items in leaves.items():
            out.trees[licence] = MerkleTree.build(items)
        return out

    def roots(self) -> tuple[BucketRoot, ...]:
        return tuple(
            BucketRoot(name=licence.bucket, count=len(tree), root=tree.root())
            for licence, tree in self.trees.items()
            if len(tree)
        )

    def plan(
        self, stored: Mapping[str, Entry], added: Sequence[Entry], tombstones: Sequence[Tombstone]
    ) -> RootsPlan:
        """The change ``added`` then ``tombstones`` make (as :func:`~coop.federation.gossip.fold`
        does: a later entry of a uid wins, a tombstone wins over all); ``stored`` holds the
        current entries of the touched uids (at least)."""
        final: dict[str, Entry | None] = {entry.uid: entry for entry in added}
        for tomb in tombstones:
            final[tomb.uid] = None
        upserts: dict[License, dict[str, bytes]] = {licence: {} for licence in License}
        removals: dict[License, list[str]] = {licence: [] for licence in License}
        if not stored:  # all new (a first manifest): no entry to compare with
            for uid, new in final.items():
                if new is not None:
                    upserts[new.license][uid] = entry_leaf(new)
        for uid, new in final.items() if stored else ():
            old = stored.get(uid)
            if old is not None and (new is None or old.license is not new.license):
                removals[old.license].append(uid)
            if new is not None and new != old:
                upserts[new.license][uid] = entry_leaf(new)
        plans: dict[License, TreePlan] = {}
        roots: list[BucketRoot] = []
        for licence, tree in self.trees.items():
            if upserts[licence] or removals[licence]:
                plan = tree.plan(upserts[licence], removals[licence])
                plans[licence] = plan
                count, root = plan.count, plan.root
            else:
                count, root = len(tree), tree.root()
            if count:
                roots.append(BucketRoot(name=licence.bucket, count=count, root=root))
        return RootsPlan(plans, tuple(roots))

    def fits(self, plan: RootsPlan) -> bool:
        """Was ``plan`` worked out against these trees as they are now?"""
        return all(self.trees[licence].version == part.base for licence, part in plan.plans.items())

    def commit(self, plan: RootsPlan) -> None:
        for licence, tree_plan in plan.plans.items():
            self.trees[licence].commit(tree_plan)
