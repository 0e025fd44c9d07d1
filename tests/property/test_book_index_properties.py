"""Incremental bucket roots and the index of missing records agree with the from-scratch answers.

* :class:`~coop.federation.merkle.MerkleTree` re-rooted after random inserts, replacements and
  removals gives :func:`~coop.federation.merkle.merkle_root` of the sorted leaves;
* both book stores (memory, SQLite on a file), driven by random manifests (entries added,
  replaced, relicensed, tombstoned), mirrored copies, refusals, forks and embargo or freeze
  changes, answer ``roots_after`` as ``bucket_roots`` of the folded set does, and
  ``Book.record_wants`` (which reads the index) as the old walk over every entry did (kept
  below as the oracle).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coop.federation.bucket_trees import entry_leaf
from coop.federation.gossip import (
    Book,
    BookStore,
    Effects,
    Entry,
    Head,
    MemoryBookStore,
    Tombstone,
    _contested,
    collective_state,
    listed_facts,
    mirrorable,
)
from coop.federation.manifest import _HEX64 as HEX64
from coop.federation.manifest import BucketManifest, _bucket_entries_valid, bucket_roots, entry_bytes
from coop.federation.merkle import MerkleTree, leaf_hash, merkle_root
from coop.federation.simulation import record_for
from coop.governance import Audience, Embargo, EvalConsent, License, Scope, disclose, sha256_hex
from coop.node.peering.books import SqliteBookStore
from coop.node.storage.store import Store

SELF = "f" * 64
ORIGINS = ("a" * 64, "b" * 64)
UIDS = tuple(f"0190-{i:02d}" for i in range(10))
HASHES = tuple(sha256_hex(bytes([i])) for i in range(6))
LICENCES = tuple(License)
SCOPES = (Scope.PUBLIC, Scope.FEDERATION, Scope.NODE)
TAGS = ((), ("medical",), ("code",))


# -- the tree alone ------------------------------------------------------------------------------

keys = st.integers(0, 80).map(lambda i: f"{i:03d}")
steps = st.lists(
    st.tuples(
        st.dictionaries(keys, st.binary(max_size=4), max_size=20), st.lists(keys, max_size=6), st.booleans()
    ),
    min_size=1,
    max_size=10,
)


@given(steps)
@settings(max_examples=300, deadline=None)
def test_incremental_root_is_the_root_from_scratch(
    changes: list[tuple[dict[str, bytes], list[str], bool]],
) -> None:
    tree = MerkleTree()
    held: dict[str, bytes] = {}
    for upserts, removals, keep in changes:
        plan = tree.plan({k: leaf_hash(v) for k, v in upserts.items()}, removals)
        after = {**held, **upserts}
        for key in removals:
            after.pop(key, None)
        expected = merkle_root([after[k] for k in sorted(after)])
        assert (plan.root, plan.count) == (expected, len(after))
        if keep:  # a plan may be dropped (a manifest whose roots did not match)
            tree.commit(plan)
            held = after
            assert tree.root() == expected and tree.keys == sorted(held)


def test_a_stale_plan_is_refused() -> None:
    tree = MerkleTree.build([("a", leaf_hash(b"a"))])
    first, second = tree.plan({"b": leaf_hash(b"b")}, ()), tree.plan({}, ["a"])
    tree.commit(first)
    with pytest.raises(ValueError, match="another version"):
        tree.commit(second)


# -- the stores, against the old full walk --------------------------------------------------------


def old_record_wants(book: Book, limit: int) -> tuple[list[tuple[str, Entry]], set[str]]:
    """The walk over every entry of every origin that ``record_wants`` replaced (the oracle)."""
    out: list[tuple[str, Entry]] = []
    complete: set[str] = set()
    for origin, head in sorted(book.store.heads().items()):
        if origin == book.self_id or origin not in book.pinned:
            continue
        state = collective_state(head)
        gone = book.store.tombstoned(origin)
        candidates = [
            e
            for _, e in sorted(book.store.entries(origin).items())
            if mirrorable(e)
            and e.uid not in gone
            and disclose(listed_facts(origin, e), state, Audience.PEER, requester=book.self_id)
        ]
        held = book.store.records([e.hash for e in candidates])
        claims = book.store.claims([e.hash for e in candidates if e.hash not in held])
        missing = [
            (origin, e)
            for e in candidates
            if e.hash not in held
            and not _contested(claims.get(e.hash, ()), origin, e.uid)
            and (origin, e.uid, e.hash) not in book._refused
        ]
        if not missing:
            complete.add(origin)
        out += missing
        if len(out) >= limit:
            break
    return out[:limit], complete


def fold(
    entries: dict[str, Entry], added: tuple[Entry, ...], tombstones: tuple[Tombstone, ...]
) -> dict[str, Entry]:
    folded = dict(entries)
    for entry in added:
        folded[entry.uid] = entry
    for tomb in tombstones:
        folded.pop(tomb.uid, None)
    return folded


entry_st = st.builds(
    lambda uid, digest, licence, scope, tags: Entry(
        uid=uid,
        hash=digest,
        license=licence,
        ai_use="train-ai=y",
        eval=EvalConsent.YES,
        scope=scope,
        tags=tags,
    ),
    st.sampled_from(UIDS),
    st.sampled_from(HASHES),
    st.sampled_from(LICENCES),
    st.sampled_from(SCOPES),
    st.sampled_from(TAGS),
)
manifest_op = st.tuples(
    st.just("manifest"),
    st.sampled_from(ORIGINS),
    st.lists(entry_st, max_size=6),
    st.lists(st.sampled_from(UIDS), max_size=3),
    st.sampled_from([Embargo(), Embargo(on=True, tags=("medical",)), Embargo(on=True)]),
    st.booleans(),
)
hold_op = st.tuples(st.just("hold"), st.sampled_from(ORIGINS), st.sampled_from(UIDS), st.booleans())
refuse_op = st.tuples(st.just("refuse"), st.sampled_from(ORIGINS), st.sampled_from(UIDS))
fork_op = st.tuples(st.just("fork"), st.sampled_from(ORIGINS))
ops = st.lists(st.one_of(manifest_op, manifest_op, hold_op, hold_op, refuse_op, fork_op), max_size=25)


@contextmanager
def book_store(kind: str) -> Iterator[BookStore]:
    if kind == "memory":
        yield MemoryBookStore()
        return
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "node.db", synchronous="off")
        try:
            yield SqliteBookStore(store)
        finally:
            store.close()


def run(kind: str, sequence: list[tuple[Any, ...]]) -> None:
    seqs = dict.fromkeys(ORIGINS, 0)
    with book_store(kind) as store:
        book = Book(SELF, {o: o for o in ORIGINS}, store)
        for op in sequence:
            if op[0] == "manifest":
                _, origin, added, tombs, embargo, freeze = op
                added = tuple({e.uid: e for e in added if e.scope is not Scope.NODE}.values())
                tombstones = tuple(Tombstone(uid=u, at=0) for u in dict.fromkeys(tombs))
                expected = bucket_roots(fold(store.entries(origin), added, tombstones))
                assert store.roots_after(origin, added, tombstones) == expected
                seqs[origin] += 1
                head = Head(
                    seq=seqs[origin],
                    hash=sha256_hex(f"{origin}{seqs[origin]}".encode()),
                    key=origin,
                    embargo=embargo,
                    embargo_whole=embargo.on and not embargo.tags,
                    quality_freeze=freeze,
                    forked=store.heads()[origin].forked if origin in store.heads() else False,
                )
                store.apply(Effects(origin=origin, store=(), head=head, added=added, tombstones=tombstones))
                assert store.roots_after(origin, (), ()) == bucket_roots(store.entries(origin))
            elif op[0] == "hold":
                _, origin, uid, same_uid = op
                entry = store.entries(origin).get(uid)
                if entry is not None:
                    # The record's own uid is the entry's, or another (a decoy under the hash).
                    own = entry if same_uid else Entry(**{**_fields(entry), "uid": UIDS[-1]})
                    store.put_records([(origin, entry, record_for(own)[1])])
            elif op[0] == "refuse":
                _, origin, uid = op
                entry = store.entries(origin).get(uid)
                if entry is not None:
                    book._refused.add((origin, uid, entry.hash))
            elif op[0] == "fork":
                store.apply(Effects(origin=op[1], store=(), forked=True))
            for limit in (1, 1000):
                expected_out, expected_complete = old_record_wants(book, limit)
                book._complete = set()
                assert book.record_wants(limit=limit) == expected_out
                if limit == 1000:
                    assert book._complete == expected_complete


def _fields(entry: Entry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in entry.__struct_fields__}


@given(ops)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_memory_store_index_and_roots_agree_with_the_full_walk(sequence: list[tuple[Any, ...]]) -> None:
    run("memory", sequence)


@given(ops)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_sqlite_store_index_and_roots_agree_with_the_full_walk(sequence: list[tuple[Any, ...]]) -> None:
    run("sqlite", sequence)


# -- the fast forms of two checks give the slow forms' answers ----------------------------------

text = st.text(alphabet=st.sampled_from('ab"\\é\n\x00 0f'), max_size=6)


@given(
    st.builds(
        Entry,
        uid=text,
        hash=text,
        license=st.sampled_from(LICENCES),
        ai_use=text,
        eval=st.sampled_from(tuple(EvalConsent)),
        scope=st.sampled_from(SCOPES),
        tags=st.lists(text, max_size=2).map(tuple),
        language=st.none() | text,
    )
)
def test_entry_leaf_hashes_entry_bytes(entry: Entry) -> None:
    assert entry_leaf(entry) == leaf_hash(entry_bytes(entry))


hex64 = st.sampled_from(HASHES)
odd_hash = st.one_of(
    hex64, hex64.map(lambda h: h + "\n"), hex64.map(lambda h: h + "\n" + h), st.just(""), hex64.map(str.upper)
)


@given(
    st.sampled_from(LICENCES),
    st.lists(
        st.tuples(
            st.sampled_from(("", "a", "b", "c", "d")),
            odd_hash,
            st.sampled_from(LICENCES),
            st.sampled_from(SCOPES),
        ),
        max_size=5,
    ),
)
def test_fast_entry_checks_agree_with_the_walk(
    licence: License, rows: list[tuple[str, str, License, Scope]]
) -> None:
    entries = tuple(
        Entry(uid=u, hash=h, license=lic, ai_use="train-ai=y", eval=EvalConsent.YES, scope=s)
        for u, h, lic, s in rows
    )
    bucket = BucketManifest(name=licence.bucket, license=licence, entries=entries)
    previous, walk = "", True
    for entry in entries:
        if (
            entry.license is not licence
            or entry.scope is Scope.NODE
            or entry.uid <= previous
            or not HEX64.match(entry.hash)
        ):
            walk = False
            break
        previous = entry.uid
    # Sound (never passes what the walk refuses); complete for hashes without a line break
    # (a trailing one the walk's ``$`` lets through is left to the walk, which then runs).
    fast = _bucket_entries_valid(bucket)
    assert walk or not fast
    if walk and all("\n" not in e.hash for e in entries):
        assert fast
