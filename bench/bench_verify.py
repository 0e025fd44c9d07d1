"""Manifest verification from scratch, and a receive at 10,000 members, beside the old code.

In one run, on the same data, each figure the median of ``--repeats`` (old and ours alternate):

1. ``check_manifest`` of a ``--entries`` (100k) manifest, and ``Book.receive`` of it into a fresh
   ``MemoryBookStore``.  The baseline is the same code with the old checks swapped in: the old
   nesting scan (the string pattern over every byte; copy below) and ``duplicate_key`` (Python's
   json with ``object_pairs_hook``) over the envelope and the payload, where ours re-encodes
   what msgspec decoded (``duplicate_key_of``).
2. A 1-entry manifest received by a book with ``--members`` (10,000) pinned origins, each with a
   head; the baseline rebuilds ``trusted_keys`` on every receive (the old method, copied below),
   and copies the pins for ``wants``.

    .venv/bin/python bench/bench_verify.py [--entries 100000] [--members 10000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import accumulate
from typing import Final

import coop.governance.envelope as envelope_module
from bench_book_scale import NOW, Origin, old_bucket_roots
from coop.federation.gossip import Accepted, Book, DigestItem, Head, MemoryBookStore, wants
from coop.federation.manifest import GENESIS, check_manifest
from coop.governance.canonical import duplicate_key
from coop.governance.nesting import MAX_JSON_DEPTH
from results import append_section, code_version, command, machine, markdown_table

SELF: Final = "f" * 64

# --- the old code, kept as the baseline ----------------------------------------------------------
_OLD_STRING: Final = re.compile(rb'"[^"\\\n]*+(?:\\[^\n]?[^"\\\n]*+)*+(?:"|$)', re.MULTILINE)
_OLD_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_OLD_STEPS: Final = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def old_json_too_deep(data: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    openers = raw.count(b"[") + raw.count(b"{")
    levels = accumulate(array("b", _OLD_STRING.sub(b"", raw).translate(_OLD_STEPS, _OLD_NOT_BRACKETS)))
    return openers > limit and next(filter(limit.__lt__, levels), None) is not None


def old_duplicate_key_of(data: bytes, _decoded: object) -> str | None:
    return duplicate_key(data)


@contextmanager
def old_checks() -> Iterator[None]:
    """open_envelope (and check_manifest through it) with the old nesting scan and key check."""
    saved = envelope_module.json_too_deep, envelope_module.duplicate_key_of
    envelope_module.json_too_deep = old_json_too_deep  # type: ignore[assignment]
    envelope_module.duplicate_key_of = old_duplicate_key_of
    try:
        yield
    finally:
        envelope_module.json_too_deep, envelope_module.duplicate_key_of = saved


def old_trusted_keys(self: Book) -> dict[str, str]:
    heads = self.store.heads()
    keys = {key: origin for origin, key in self.pinned.items() if origin not in heads}
    keys.update({head.key: origin for origin, head in heads.items() if origin in self.pinned})
    return keys


def old_wants(self: Book, remote: dict[str, DigestItem]) -> object:
    return wants(self.digest(), remote, set(self.pinned) | {self.self_id})


@contextmanager
def old_book() -> Iterator[None]:
    saved = Book.trusted_keys, Book.wants
    Book.trusted_keys = old_trusted_keys  # type: ignore[method-assign]
    Book.wants = old_wants  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        Book.trusted_keys, Book.wants = saved  # type: ignore[method-assign]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def paired(old: Callable[[], object], ours: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Medians of ``old`` (under the old code) and ``ours``, run alternately."""
    t_old, t_ours = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        old()
        t1 = time.perf_counter()
        ours()
        t2 = time.perf_counter()
        t_old.append(t1 - t0)
        t_ours.append(t2 - t1)
    return statistics.median(t_old), statistics.median(t_ours)


def row(what: str, old: float, ours: float) -> list[str]:
    return [what, ms(old), ms(ours), f"{old / ours:,.1f}×"]


def bench_scratch(n: int, repeats: int) -> list[list[str]]:
    origin = Origin(random.Random(1402))
    entries = origin.entries(n, 0)
    envelope, _ = origin.envelope(1, GENESIS, entries, old_bucket_roots({e.uid: e for e in entries}))
    trusted = {origin.id: origin.id}

    def check() -> None:
        check_manifest(envelope, trusted=trusted)

    def receive() -> None:
        assert isinstance(
            Book(SELF, trusted, MemoryBookStore()).receive([envelope], now=NOW + 1)[0], Accepted
        )

    def old(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            with old_checks():
                fn()

        return run

    rows = [
        row(
            f"check_manifest, {n:,} entries ({len(envelope) / 1e6:.1f} MB)",
            *paired(old(check), check, repeats),
        )
    ]
    rows.append(
        row(f"Book.receive of {n:,} entries from scratch (memory)", *paired(old(receive), receive, repeats))
    )
    return rows


def bench_members(members: int, repeats: int) -> list[list[str]]:
    rng = random.Random(1403)
    origin = Origin(rng)
    pins = {f"{i:064x}": f"{i:064x}" for i in range(members - 1)}
    pins[origin.id] = origin.id
    store = MemoryBookStore()
    book = Book(SELF, pins, store)
    for other in list(pins)[: members - 1]:
        store._heads[other] = Head(seq=1, hash="0" * 64, key=other, coop="c")  # a head per member
    remote = {o: DigestItem(seq=2, hash="1" * 64, evidence=()) for o in list(pins)[:members]}
    manifests = []
    prev, complete = GENESIS, {}
    for seq, entry in enumerate(origin.entries(2 * repeats + 1, 0), start=1):
        complete[entry.uid] = entry
        envelope, prev = origin.envelope(seq, prev, [entry], old_bucket_roots(complete))
        manifests.append(envelope)
    book.receive([manifests[0]], now=NOW + 1)
    feed = iter(manifests[1:])

    def receive() -> None:
        assert isinstance(book.receive([next(feed)], now=NOW + 1)[0], Accepted)

    def old_receive() -> None:
        with old_book():
            receive()

    def want() -> None:
        book.wants(remote)

    def old_want() -> None:
        with old_book():
            want()

    return [
        row(
            f"Book.receive of a 1-entry manifest, {members:,} members", *paired(old_receive, receive, repeats)
        ),
        row(f"Book.wants, {members:,} members all ahead", *paired(old_want, want, repeats)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    code = code_version()
    started = time.perf_counter()
    rows = bench_scratch(args.entries, args.repeats) + bench_members(args.members, args.repeats)
    table = markdown_table(["what", "old code (baseline)", "ours", "old / ours"], rows)
    print(table)
    if not args.no_write:
        section = [
            f"- command: `{command(__file__)}`",
            f"- machine: {machine()}",
            f"- code at start: {code}",
            f"- load average when the run began: {load_before:.2f}; wall time: {time.perf_counter() - started:.0f} s",
            "- old and ours alternate in one process on the same data; medians.  The baseline is ours with"
            " the old functions swapped in (copies in bench/bench_verify.py).",
            "",
            table,
        ]
        print(
            f"\nappended to {append_section('Manifest verification from scratch; receive at 10,000 members', section)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
