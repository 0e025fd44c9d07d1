"""A book at scale: incremental bucket roots and the index of missing records, beside the old path.

In one run, on the same data:

1. **Verify and index from scratch.**  A manifest of ``--base`` entries (100k) received by a
   fresh book: ours is ``Book.receive`` (``check_manifest``, roots worked out by the bucket
   trees, entries and missing index stored) into a ``MemoryBookStore`` and into a
   ``SqliteBookStore`` on a file; the baseline is what the old path did beyond storing:
   ``check_manifest`` with its second ``duplicate_key`` pass over the payload, the old ``fold``
   and ``bucket_roots`` from scratch (copies kept below).
2. **A 1-entry manifest on top of N entries** (``--sizes``, 100k and 1M), memory and SQLite:
   ours is ``Book.receive`` of the next manifest (median of ``--repeats`` successive ones);
   the baseline is the old ``fold`` + ``bucket_roots`` of the whole set alone.  The 1M base is
   put in each store once, by ``store.apply`` (a verified first manifest's effects).
3. **record_wants** with every record held but ``--missing`` (10): ours reads the index; the
   baseline is the old walk over every entry (copy below).  Memory at every size; SQLite at
   ``--sqlite-wants`` (100k: holding 1M copies in SQLite alone takes minutes).

    .venv/bin/python bench/bench_book_scale.py [--sizes 100000,1000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

import msgspec

from coop.federation.bucket_trees import BucketTrees
from coop.federation.gossip import (
    Accepted,
    Book,
    BookStore,
    Effects,
    Head,
    MemoryBookStore,
    _contested,
    collective_state,
    listed_facts,
    mirrorable,
)
from coop.federation.manifest import (
    GENESIS,
    PAYLOAD_TYPE,
    BucketRoot,
    Entry,
    GovernanceState,
    Limits,
    Manifest,
    build_manifest,
    check_manifest,
    entry_bytes,
    seal_manifest,
)
from coop.federation.merkle import merkle_root
from coop.federation.simulation import record_for
from coop.governance import (
    Audience,
    Embargo,
    EvalConsent,
    License,
    Scope,
    canonical_bytes,
    disclose,
    public_key,
    sha256_hex,
)
from coop.governance.canonical import duplicate_key
from coop.governance.envelope import open_envelope
from coop.governance.signing import Signer
from coop.node.ids import uuid7
from coop.node.peering.books import SqliteBookStore
from coop.node.storage.store import Store
from results import append_section, code_version, command, machine, markdown_table

SELF: Final = "f" * 64
# A 1-entry manifest on top of 1,000,000 states 1,000,001 entries in its roots: one over the
# default limit (a count the node refuses by default), so the book here allows a little more.
LIMITS: Final = Limits(max_entries=1_100_000)
NOW: Final = 1_800_000_000
STATE: Final = GovernanceState(
    settings_digest="0" * 64, embargo=Embargo(), quality_freeze=False, audit_seq=0, audit_head="0" * 64
)


# --- the old path, kept as the baseline --------------------------------------------------------


def old_fold(entries: Mapping[str, Entry], manifest: Manifest) -> dict[str, Entry]:
    folded = dict(entries)
    for entry in manifest.added():
        folded[entry.uid] = entry
    for tomb in manifest.tombstones:
        folded.pop(tomb.uid, None)
    return folded


def old_bucket_roots(complete: Mapping[str, Entry]) -> tuple[BucketRoot, ...]:
    by_licence: dict[License, list[Entry]] = {}
    for entry in complete.values():
        by_licence.setdefault(entry.license, []).append(entry)
    roots = []
    for licence in License:
        items = sorted(by_licence.get(licence, ()), key=lambda e: e.uid)
        if items:
            roots.append(
                BucketRoot(
                    name=licence.bucket, count=len(items), root=merkle_root([entry_bytes(e) for e in items])
                )
            )
    return tuple(roots)


def old_check_manifest(envelope: bytes, payload: bytes, trusted: Mapping[str, str]) -> None:
    """check_manifest as it was: the same, plus its second duplicate_key pass over the payload."""
    check_manifest(envelope, trusted=trusted)
    duplicate_key(payload)


def old_record_wants(book: Book, limit: int) -> list[tuple[str, Entry]]:
    out: list[tuple[str, Entry]] = []
    for origin, head in sorted(book.store.heads().items()):
        if origin == book.self_id or origin not in book.pinned:
            continue
        state = collective_state(head)
        gone = book.store.tombstoned(origin)
        candidates = [
            e
            for e in book.store.entries(origin).values()
            if mirrorable(e)
            and e.uid not in gone
            and disclose(listed_facts(origin, e), state, Audience.PEER, requester=book.self_id)
        ]
        held = book.store.records([e.hash for e in candidates])
        claims = book.store.claims([e.hash for e in candidates if e.hash not in held])
        out += [
            (origin, e)
            for e in candidates
            if e.hash not in held
            and not _contested(claims.get(e.hash, ()), origin, e.uid)
            and (origin, e.uid, e.hash) not in book._refused
        ]
        if len(out) >= limit:
            break
    return out[:limit]


# --- data ----------------------------------------------------------------------------------------


class Origin:
    def __init__(self, rng: random.Random) -> None:
        self.seed = rng.randbytes(32)
        self.id = public_key(self.seed).hex()
        self.rng = rng

    def entries(self, n: int, start: int) -> list[Entry]:
        licences = list(License)
        return [
            Entry(
                uid=uuid7((NOW - 10_000_000 + start + i) * 1_000_000_000, self.rng.randbytes(10)),
                hash=sha256_hex(self.rng.randbytes(32)),
                license=licences[(start + i) % len(licences)],
                ai_use="train-ai=y",
                eval=EvalConsent.YES,
                scope=Scope.PUBLIC,
            )
            for i in range(n)
        ]

    def envelope(
        self, seq: int, prev: str, added: list[Entry], roots: tuple[BucketRoot, ...]
    ) -> tuple[bytes, str]:
        """A sealed manifest with the given roots (worked out by the caller); its payload hash."""
        payload = build_manifest(
            origin=self.id,
            key=self.id,
            coop="coop-bench",
            seq=seq,
            prev=prev,
            issued_at=NOW,
            lifetime=30 * 86_400,
            release=f"v{seq}",
            added=added,
            complete={},
            tombstones=[],
            state=STATE,
        )
        manifest = msgspec.structs.replace(msgspec.json.decode(payload, type=Manifest), roots=roots)
        payload = canonical_bytes(manifest)
        return seal_manifest(payload, [Signer(self.seed)]), sha256_hex(payload)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median_of(fn: Callable[[], object], repeats: int) -> float:
    return statistics.median(timed(fn) for _ in range(repeats))


def sqlite_store(folder: Path, name: str) -> tuple[Store, SqliteBookStore]:
    store = Store(folder / f"{name}.db", synchronous="normal")
    return store, SqliteBookStore(store)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def ratio(old: float, new: float) -> str:
    return f"{old / new:,.1f}×" if new > 0 else "—"


# --- the parts ---------------------------------------------------------------------------------


def bench_scratch(origin: Origin, n: int, repeats: int, folder: Path) -> tuple[list[list[str]], list[str]]:
    entries = origin.entries(n, 0)
    roots = old_bucket_roots({e.uid: e for e in entries})
    envelope, _ = origin.envelope(1, GENESIS, entries, roots)
    payload = open_envelope(envelope, payload_type=PAYLOAD_TYPE, max_bytes=1 << 31)[1]
    trusted = {origin.id: origin.id}

    def ours_memory() -> None:
        book = Book(SELF, trusted, MemoryBookStore())
        assert isinstance(book.receive([envelope], now=NOW + 1)[0], Accepted)

    def baseline() -> None:
        old_check_manifest(envelope, payload, trusted)
        manifest = msgspec.json.decode(payload, type=Manifest)
        assert old_bucket_roots(old_fold({}, manifest)) == manifest.roots

    t_check = median_of(lambda: check_manifest(envelope, trusted=trusted), repeats)
    t_old_check = median_of(lambda: old_check_manifest(envelope, payload, trusted), repeats)
    t_ours = median_of(ours_memory, repeats)
    t_base = median_of(baseline, repeats)
    counter = iter(range(1_000_000))

    def ours_sqlite() -> None:
        store, books = sqlite_store(folder, f"scratch{next(counter)}")
        try:
            book = Book(SELF, trusted, books)
            assert isinstance(book.receive([envelope], now=NOW + 1)[0], Accepted)
        finally:
            store.close()

    t_sqlite = median_of(ours_sqlite, max(1, repeats // 2))
    rows = [
        [f"check_manifest, {n:,} entries", ms(t_old_check), ms(t_check), ratio(t_old_check, t_check)],
        [
            f"verify + index {n:,} entries from scratch (memory)",
            ms(t_base) + " (check + fold + roots, not storing)",
            ms(t_ours) + " (Book.receive)",
            ratio(t_base, t_ours),
        ],
        [
            f"verify + index {n:,} entries from scratch (SQLite file)",
            "—",
            ms(t_sqlite) + " (Book.receive)",
            "—",
        ],
    ]
    notes = [f"- {n:,}-entry envelope: {len(envelope):,} B"]
    return rows, notes


def bench_on_top(
    origin: Origin, n: int, repeats: int, folder: Path, missing: int, sqlite_wants: int
) -> list[list[str]]:
    base = origin.entries(n, 0)
    extra = origin.entries(repeats + 1, n)
    # The baseline (old fold + bucket_roots of the whole set) gives the next manifest's roots.
    first = old_bucket_roots({**{e.uid: e for e in base}, extra[0].uid: extra[0]})
    rows = on_top_in("memory", MemoryBookStore(), origin, base, extra, first, repeats, missing)
    gc.collect()
    store, books = sqlite_store(folder, f"top{n}")
    try:
        rows += on_top_in(
            "SQLite file", books, origin, base, extra, first, repeats, missing if n <= sqlite_wants else 0
        )
    finally:
        store.close()
    return rows


def on_top_in(
    kind: str,
    store: BookStore,
    origin: Origin,
    base: list[Entry],
    extra: list[Entry],
    first: tuple[BucketRoot, ...],
    repeats: int,
    missing: int,
) -> list[list[str]]:
    """Put ``base`` in ``store``; time 1-entry manifests on top, then record_wants (when ``missing``)."""
    n = len(base)
    trusted = {origin.id: origin.id}
    head_hash = sha256_hex(f"base {n}".encode())
    head = Head(seq=1, hash=head_hash, key=origin.id, coop="coop-bench")
    t_base_build = timed(
        lambda: store.apply(Effects(origin=origin.id, store=(), head=head, added=tuple(base)))
    )
    book = Book(SELF, trusted, store, limits=LIMITS)
    old_entries = store.entries(origin.id)
    envelope, prev = origin.envelope(2, head_hash, [extra[0]], first)
    decoded = check_manifest(envelope, trusted=trusted, limits=LIMITS).manifest
    t_old = timed(lambda: old_bucket_roots(old_fold(old_entries, decoded)))
    twin = BucketTrees.build([*base, extra[0]])
    times = [timed(lambda: book.receive([envelope], now=NOW + 1))]
    assert store.heads()[origin.id].seq == 2, "the first 1-entry manifest was not accepted"
    for i in range(1, repeats):
        plan = twin.plan({}, [extra[i]], ())
        twin.commit(plan)
        envelope, nxt = origin.envelope(2 + i, prev, [extra[i]], plan.roots)
        times.append(timed(lambda envelope=envelope: book.receive([envelope], now=NOW + 1)))  # type: ignore[misc]
        assert store.heads()[origin.id].seq == 2 + i
        prev = nxt
    rows = [
        [
            f"1-entry manifest on top of {n:,} ({kind})",
            ms(t_old) + " (fold + bucket_roots only)",
            ms(statistics.median(times)) + f" (Book.receive, median of {repeats})",
            ratio(t_old, statistics.median(times)),
        ],
        [f"put the {n:,}-entry base in the {kind} store (once)", "—", ms(t_base_build), "—"],
    ]
    if not missing:
        return rows
    listed = store.entries(origin.id)
    _, data = record_for(next(iter(listed.values())))
    keep = sorted(listed)[missing:]
    for start in range(0, len(keep), 50_000):
        store.put_records([(origin.id, listed[uid], data) for uid in keep[start : start + 50_000]])
    del listed
    limit = 2048
    book._complete.clear()
    t_old_wants = median_of(lambda: old_record_wants(book, limit), max(1, repeats // 2))
    want_old = old_record_wants(book, limit)

    def fresh_wants() -> list[tuple[str, Entry]]:
        book._complete.clear()  # every call reads the index (none skipped as complete)
        return book.record_wants(limit=limit)

    t_new_wants = median_of(fresh_wants, repeats)
    assert sorted(fresh_wants(), key=lambda w: w[1].uid) == sorted(want_old, key=lambda w: w[1].uid)
    assert len(want_old) == missing
    rows.append(
        [
            f"record_wants, {n + repeats:,} entries, {missing} missing ({kind})",
            ms(t_old_wants) + " (walk)",
            ms(t_new_wants) + " (index)",
            ratio(t_old_wants, t_new_wants),
        ]
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="entries under the 1-entry manifest")
    parser.add_argument("--base", type=int, default=100_000, help="entries verified and indexed from scratch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--missing", type=int, default=10, help="records not held, for record_wants")
    parser.add_argument(
        "--sqlite-wants", type=int, default=100_000, help="largest size for SQLite record_wants"
    )
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    load_before = os.getloadavg()[0]
    code = code_version()
    started = time.perf_counter()
    rng = random.Random(20261202)
    with tempfile.TemporaryDirectory(prefix="bench-book-") as tmp:
        folder = Path(tmp)
        rows, notes = bench_scratch(Origin(rng), args.base, args.repeats, folder)
        for n in sizes:
            rows += bench_on_top(Origin(rng), n, args.repeats, folder, args.missing, args.sqlite_wants)
    elapsed = time.perf_counter() - started
    table = markdown_table(["what", "old path (baseline)", "ours", "old / ours"], rows)
    print(table)
    if not args.no_write:
        section = [
            f"- command: `{command(__file__)}`",
            f"- machine: {machine()}",
            f"- code at start: {code}",
            f"- load average when the run began: {load_before:.2f}; wall time of the whole run: {elapsed:.0f} s",
            "- ours and the baseline run on the same data in the same process; figures are medians unless"
            " marked once.  The baseline for a 1-entry manifest is only the old fold + from-scratch roots"
            " (the old receive did that plus what ours does), so the ratio understates the change.",
            "",
            table,
            "",
            *notes,
        ]
        print(f"\nappended to {append_section('Book at scale: incremental roots, missing index', section)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
