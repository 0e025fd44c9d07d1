"""The book store: what this node knows of every origin's chain, kept in its SQLite database.

:class:`SqliteBookStore` is the node's :class:`~coop.federation.gossip.BookStore` (the
rules that fill it live in :mod:`coop.federation`): origins' heads (``fed_origins``),
their manifests as received (``fed_manifests``), listed entries (``fed_entries``),
tombstones (``fed_tombstones``) and the record bytes mirrored here (``mirror_records``).
The queries the node's own pages and peers' record pulls read from those tables live
here too, so the peering package's SQL has one home (the ``peers`` table's is in
:mod:`coop.node.peering.peers`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import msgspec

from coop.federation import Book, Decision, Effects, Entry, GovernanceState, Head, Tombstone
from coop.federation.bucket_trees import BucketTrees, RootsPlan, touched_uids
from coop.federation.gossip import MIRRORABLE_LICENCES, RecordRefusal, declared_joint, mirrorable
from coop.federation.manifest import PAYLOAD_TYPE, BucketRoot, ManifestJoint
from coop.federation.roster import RosterRef
from coop.governance import EvalConsent, License, Scope
from coop.governance.envelope import open_envelope
from coop.node.policy import (
    HEAD_COLUMNS,
    head_from_row,
    mirror_facts,
    record_uid,
)
from coop.node.storage.store import Store
from coop.node.storage.writer import scrub_after_commit

__all__ = [
    "DeclaredState",
    "LockedBook",
    "SqliteBookStore",
    "declared_state",
    "entry_from_row",
    "placeholders",
]

_TAGS: Final = msgspec.json.Decoder(list[str])
_ENTRY_COLUMNS: Final = "uid, hash, license, ai_use, eval, scope, tags, language"
# What :func:`coop.federation.gossip.mirrorable` says, in SQL over fed_entries ``e``.
_MIRRORABLE: Final = (
    f"e.scope IN ('{Scope.FEDERATION.value}', '{Scope.PUBLIC.value}')"
    f" AND e.license IN ({', '.join(repr(licence.value) for licence in sorted(MIRRORABLE_LICENCES))})"
)


def placeholders(n: int) -> str:
    return ", ".join("?" * n)


def entry_from_row(row: Sequence[Any]) -> Entry:
    """An entry from (uid, hash, license, ai_use, eval, scope, tags as JSON, language)."""
    return Entry(
        uid=row[0],
        hash=row[1],
        license=License(row[2]),
        ai_use=row[3],
        eval=EvalConsent(row[4]),
        scope=Scope(row[5]),
        tags=tuple(_TAGS.decode(row[6])),
        language=row[7],
    )


class DeclaredState(msgspec.Struct):
    """What a manifest declares of its co-op (the rest of the payload is skipped)."""

    state: GovernanceState
    expires_at: int
    federation: tuple[str, ...] | None = None
    roster: RosterRef | None = None  # the roster it named as its federation scope
    gated: tuple[License, ...] = ()  # the licence buckets it gates
    mirror_gated: bool = False  # whether its federation may mirror them
    joint: ManifestJoint | None = None  # what the joint actions binding it demand (None: nothing)


def declared_state(envelope: bytes) -> DeclaredState:
    """The state a stored (already verified) manifest envelope declares."""
    _, payload = open_envelope(envelope, payload_type=PAYLOAD_TYPE, max_bytes=1 << 31)
    return msgspec.json.decode(payload, type=DeclaredState)


class SqliteBookStore:
    """A :class:`~coop.federation.gossip.BookStore` in the node's database.

    Each origin's bucket trees (what re-roots a manifest at the cost of its change) are kept
    in memory, built from ``fed_entries`` on first use and whenever the roots ``fed_buckets``
    holds differ from theirs (another writer, or a data directory from before the table).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._trees: dict[str, BucketTrees] = {}
        self._planned: tuple[str, tuple[Entry, ...], tuple[Tombstone, ...], BucketTrees, RootsPlan] | None = (
            None
        )

    def heads(self) -> dict[str, Head]:
        rows = self.store.read(lambda c: c.execute(f"SELECT {HEAD_COLUMNS} FROM fed_origins").fetchall())
        return {r[0]: head_from_row(r) for r in rows}

    def reread_states(self) -> None:
        """Fill in the declared state of heads stored before it was kept (from the head manifest):
        the switches, the gated buckets (migration 23: a node that ran older code may hold a
        newer peer's manifest that gates some, stored when it could not read the field) and the
        joint demands (migration 24, likewise)."""
        rows = self.store.read(
            lambda c: c.execute(
                "SELECT o.origin, m.envelope FROM fed_origins o JOIN fed_manifests m"
                " ON m.origin = o.origin AND m.hash = o.hash"
                " WHERE o.embargo IS NULL OR o.gated IS NULL OR o.joint IS NULL"
            ).fetchall()
        )
        for origin, envelope in rows:
            declared = declared_state(bytes(envelope))
            self.store.write(
                lambda c, o=origin, d=declared: c.execute(  # type: ignore[misc]
                    "UPDATE fed_origins SET embargo = ?, quality_freeze = ?, federation = ?, gated = ?,"
                    " mirror_gated = ?, joint = ? WHERE origin = ?",
                    (
                        msgspec.json.encode(d.state.embargo).decode(),
                        int(d.state.quality_freeze),
                        None if d.federation is None else msgspec.json.encode(d.federation).decode(),
                        msgspec.json.encode([g.value for g in d.gated]).decode(),
                        int(d.mirror_gated),
                        msgspec.json.encode(declared_joint(d.joint)).decode(),
                        o,
                    ),
                )
            )

    def hashes_at(self, origin: str, seq: int) -> set[str]:
        rows = self.store.read(
            lambda c: c.execute(
                "SELECT hash FROM fed_manifests WHERE origin = ? AND seq = ?", (origin, seq)
            ).fetchall()
        )
        return {r[0] for r in rows}

    def entries(self, origin: str) -> dict[str, Entry]:
        rows = self.store.read(
            lambda c: c.execute(
                "SELECT uid, hash, license, ai_use, eval, scope, tags, language FROM fed_entries WHERE origin = ?",
                (origin,),
            ).fetchall()
        )
        return {r[0]: entry_from_row(r) for r in rows}

    def evidence(self) -> dict[str, list[tuple[int, str]]]:
        rows = self.store.read(
            lambda c: c.execute("SELECT origin, seq, hash FROM fed_manifests WHERE evidence = 1").fetchall()
        )
        out: dict[str, list[tuple[int, str]]] = {}
        for origin, seq, digest in rows:
            out.setdefault(origin, []).append((seq, digest))
        return out

    def chain_after(self, origin: str, after: int, limit: int) -> list[bytes]:
        rows = self.store.read(
            lambda c: c.execute(
                "SELECT envelope FROM fed_manifests WHERE origin = ? AND seq > ? AND in_chain = 1 ORDER BY seq LIMIT ?",
                (origin, after, limit),
            ).fetchall()
        )
        return [bytes(r[0]) for r in rows]

    def envelopes(self, origin: str, hashes: Sequence[str]) -> list[bytes]:
        if not hashes:
            return []
        rows = self.store.read(
            lambda c: c.execute(
                f"SELECT envelope FROM fed_manifests WHERE origin = ? AND hash IN ({placeholders(len(hashes))})"
                " ORDER BY seq, hash",
                (origin, *hashes),
            ).fetchall()
        )
        return [bytes(r[0]) for r in rows]

    def _trees_of(self, origin: str) -> BucketTrees:
        rows = self.store.read(
            lambda c: c.execute(
                "SELECT license, count, root FROM fed_buckets WHERE origin = ?", (origin,)
            ).fetchall()
        )
        kept = {License(r[0]): BucketRoot(name=License(r[0]).bucket, count=r[1], root=r[2]) for r in rows}
        stored = tuple(kept[licence] for licence in License if licence in kept)
        trees = self._trees.get(origin)
        if trees is not None and trees.roots() == stored:
            return trees
        entries = self.store.read(
            lambda c: c.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM fed_entries WHERE origin = ? ORDER BY uid", (origin,)
            ).fetchall()
        )
        trees = BucketTrees.build(entry_from_row(r) for r in entries)
        if trees.roots() != stored:
            self.store.write(lambda c: _keep_roots(c, origin, trees.roots()))
        self._trees[origin] = trees
        return trees

    def _plan(
        self, origin: str, added: tuple[Entry, ...], tombstones: tuple[Tombstone, ...]
    ) -> tuple[BucketTrees, RootsPlan]:
        planned = self._planned
        if (
            planned is not None
            and planned[:3] == (origin, added, tombstones)
            and self._trees.get(origin) is planned[3]
            and planned[3].fits(planned[4])
        ):
            return planned[3], planned[4]
        trees = self._trees_of(origin)
        uids = touched_uids(added, tombstones)
        stored: dict[str, Entry] = {}
        if any(len(tree) for tree in trees.trees.values()):
            for start in range(0, len(uids), 500):
                chunk = uids[start : start + 500]
                rows = self.store.read(
                    lambda c, chunk=chunk: c.execute(  # type: ignore[misc]
                        f"SELECT {_ENTRY_COLUMNS} FROM fed_entries WHERE origin = ?"
                        f" AND uid IN ({placeholders(len(chunk))})",
                        (origin, *chunk),
                    ).fetchall()
                )
                stored.update((r[0], entry_from_row(r)) for r in rows)
        return trees, trees.plan(stored, added, tombstones)

    def roots_after(
        self, origin: str, added: Sequence[Entry], tombstones: Sequence[Tombstone]
    ) -> tuple[BucketRoot, ...]:
        key = (origin, tuple(added), tuple(tombstones))
        trees, plan = self._plan(*key)
        self._planned = (*key, trees, plan)
        return plan.roots

    def missing(self, origin: str) -> list[Entry]:
        rows = self.store.read(
            lambda c: c.execute(
                "SELECT e.uid, e.hash, e.license, e.ai_use, e.eval, e.scope, e.tags, e.language"
                " FROM fed_missing m JOIN fed_entries e ON e.origin = m.origin AND e.uid = m.uid"
                " WHERE m.origin = ? ORDER BY m.uid",
                (origin,),
            ).fetchall()
        )
        return [entry_from_row(r) for r in rows]

    def apply(self, effects: Effects) -> None:
        change = None
        if effects.added or effects.tombstones:
            change = self._plan(effects.origin, tuple(effects.added), tuple(effects.tombstones))
        self._planned = None
        self.store.write(lambda c: _apply(c, effects, None if change is None else change[1].roots))
        if change is not None:
            trees, plan = change
            trees.commit(plan)

    def tombstoned(self, origin: str) -> set[str]:
        rows = self.store.read(
            lambda c: c.execute("SELECT uid FROM fed_tombstones WHERE origin = ?", (origin,)).fetchall()
        )
        return {r[0] for r in rows}

    def records(self, hashes: Sequence[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for start in range(0, len(hashes), 500):
            chunk = list(hashes[start : start + 500])
            rows = self.store.read(
                lambda c, chunk=chunk: c.execute(  # type: ignore[misc]
                    f"SELECT hash, record FROM mirror_records WHERE hash IN ({placeholders(len(chunk))})",
                    chunk,
                ).fetchall()
            )
            out.update({r[0]: bytes(r[1]) for r in rows})
        return out

    def put_records(self, items: Sequence[tuple[str, Entry, bytes]]) -> None:
        def write(conn: sqlite3.Connection) -> None:
            for origin, entry, data in items:
                # Never under a tombstoned (origin, uid), nor the same record (the uid inside
                # the bytes, whatever uid the entry says) withdrawn under any origin.
                own_uid = record_uid(data)
                if own_uid is None:
                    continue  # not a record: nothing to keep
                kept = conn.execute(
                    "INSERT OR IGNORE INTO mirror_records (hash, origin, uid, license, ai_use, eval, scope, record,"
                    " received_at) SELECT ?, ?, ?, ?, ?, ?, ?, ?, unixepoch()"
                    " WHERE NOT EXISTS (SELECT 1 FROM fed_tombstones WHERE origin = ? AND uid = ?)"
                    " AND NOT EXISTS (SELECT 1 FROM fed_tombstones WHERE hash = ? AND uid = ?)",
                    (
                        entry.hash,
                        origin,
                        entry.uid,
                        entry.license.value,
                        entry.ai_use,
                        entry.eval.value,
                        entry.scope.value,
                        data,
                        origin,
                        entry.uid,
                        entry.hash,
                        own_uid,
                    ),
                ).rowcount
                if kept:
                    conn.execute("DELETE FROM fed_missing WHERE hash = ?", (entry.hash,))

        self.store.write(write)

    def claims(self, hashes: Sequence[str]) -> dict[str, set[tuple[str, str]]]:
        out: dict[str, set[tuple[str, str]]] = {}
        for start in range(0, len(hashes), 300):
            chunk = list(hashes[start : start + 300])
            marks = placeholders(len(chunk))
            rows = self.store.read(
                lambda c, chunk=chunk, marks=marks: c.execute(  # type: ignore[misc]
                    f"SELECT hash, origin, uid FROM fed_entries WHERE hash IN ({marks})"
                    f" UNION SELECT hash, origin, uid FROM mirror_records WHERE hash IN ({marks})"
                    f" UNION SELECT hash, origin, uid FROM fed_tombstones WHERE hash IN ({marks})",
                    chunk * 3,
                ).fetchall()
            )
            for digest, origin, uid in rows:
                out.setdefault(digest, set()).add((origin, uid))
        return out


def _keep_roots(conn: sqlite3.Connection, origin: str, roots: Iterable[BucketRoot]) -> None:
    """The roots ``origin``'s entries are folded to now (what the in-memory trees must match)."""
    conn.execute("DELETE FROM fed_buckets WHERE origin = ?", (origin,))
    conn.executemany(
        "INSERT INTO fed_buckets (origin, license, count, root) VALUES (?, ?, ?, ?)",
        [(origin, License.from_bucket(r.name).value, r.count, r.root) for r in roots],
    )


def _index_missing(conn: sqlite3.Connection, where: str, params: Sequence[Any]) -> None:
    """Put the listed entries ``where`` selects in the missing index, where they belong there."""
    conn.execute(
        "INSERT OR IGNORE INTO fed_missing (origin, uid, hash) SELECT e.origin, e.uid, e.hash"
        f" FROM fed_entries e WHERE {where} AND {_MIRRORABLE}"
        " AND NOT EXISTS (SELECT 1 FROM mirror_records m WHERE m.hash = e.hash)"
        " AND NOT EXISTS (SELECT 1 FROM fed_tombstones t WHERE t.origin = e.origin AND t.uid = e.uid)",
        params,
    )


def _apply(conn: sqlite3.Connection, effects: Effects, roots: tuple[BucketRoot, ...] | None = None) -> None:
    origin = effects.origin
    for seq, digest, data, in_chain in effects.store:
        conn.execute(
            "INSERT OR IGNORE INTO fed_manifests (origin, seq, hash, envelope, in_chain, received_at)"
            " VALUES (?, ?, ?, ?, ?, unixepoch())",
            (origin, seq, digest, data, int(in_chain)),
        )
    if effects.forked:
        for seq, _, _, in_chain in effects.store:
            if not in_chain:
                # Every manifest at a conflicting sequence is evidence, the chain's own included.
                conn.execute(
                    "UPDATE fed_manifests SET evidence = 1 WHERE origin = ? AND seq = ?", (origin, seq)
                )
        conn.execute("UPDATE fed_origins SET forked = 1 WHERE origin = ?", (origin,))
    head = effects.head
    if head is not None:
        conn.execute(
            "INSERT INTO fed_origins (origin, coop, seq, hash, key, forked, embargo_whole, embargo, quality_freeze,"
            " federation, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, unixepoch())"
            " ON CONFLICT (origin) DO UPDATE SET coop = excluded.coop,"
            " seq = excluded.seq, hash = excluded.hash, key = excluded.key,"
            " forked = max(forked, excluded.forked), embargo_whole = excluded.embargo_whole,"
            " embargo = excluded.embargo, quality_freeze = excluded.quality_freeze,"
            " federation = excluded.federation, updated_at = excluded.updated_at",
            (
                origin,
                head.coop,
                head.seq,
                head.hash,
                head.key,
                int(head.forked),
                int(head.embargo_whole),
                msgspec.json.encode(head.embargo).decode(),
                int(head.quality_freeze),
                None if head.federation is None else msgspec.json.encode(head.federation).decode(),
            ),
        )
        # The roster its manifest names as its federation scope (migration 18's column).
        conn.execute("UPDATE fed_origins SET roster = ? WHERE origin = ?", (head.roster, origin))
        # The buckets it gates, and whether its federation may mirror them (migration 23's columns).
        conn.execute(
            "UPDATE fed_origins SET gated = ?, mirror_gated = ? WHERE origin = ?",
            (msgspec.json.encode(head.gated).decode(), int(head.mirror_gated), origin),
        )
        # What the joint actions binding it demand, as it declares them (migration 24's column).
        conn.execute(
            "UPDATE fed_origins SET joint = ? WHERE origin = ?",
            (msgspec.json.encode(head.joint).decode(), origin),
        )
        if effects.unforked:
            conn.execute("UPDATE fed_origins SET forked = 0 WHERE origin = ?", (origin,))
    conn.executemany(
        "INSERT OR REPLACE INTO fed_entries (origin, uid, hash, license, ai_use, eval, scope, tags, language)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                origin,
                e.uid,
                e.hash,
                e.license.value,
                e.ai_use,
                e.eval.value,
                e.scope.value,
                msgspec.json.encode(e.tags).decode(),
                e.language,
            )
            for e in effects.added
        ],
    )
    if effects.added:
        conn.executemany(
            "DELETE FROM fed_missing WHERE origin = ? AND uid = ?", [(origin, e.uid) for e in effects.added]
        )
        conn.executemany(
            "INSERT OR IGNORE INTO fed_missing (origin, uid, hash) SELECT ?, ?, ?"
            " WHERE NOT EXISTS (SELECT 1 FROM mirror_records WHERE hash = ?)"
            " AND NOT EXISTS (SELECT 1 FROM fed_tombstones WHERE origin = ? AND uid = ?)",
            [(origin, e.uid, e.hash, e.hash, origin, e.uid) for e in effects.added if mirrorable(e)],
        )
    for tomb in effects.tombstones:
        _withdraw(conn, origin, tomb.uid)
    if roots is not None:
        _keep_roots(conn, origin, roots)


def _withdraw(conn: sqlite3.Connection, origin: str, uid: str) -> None:
    """One tombstone of ``origin``: its entry goes, and every mirrored copy of that record."""
    # The hash the entry listed (or the copy held) is kept with the tombstone: the same bytes
    # stay out under any other origin's entry, and a copy held under one is deleted too.
    entry = conn.execute(
        "SELECT hash FROM fed_entries WHERE origin = ? AND uid = ?", (origin, uid)
    ).fetchone()
    held = conn.execute(
        "SELECT hash FROM mirror_records WHERE origin = ? AND uid = ?", (origin, uid)
    ).fetchone()
    withdrawn = entry[0] if entry else held[0] if held else None
    conn.execute("DELETE FROM fed_entries WHERE origin = ? AND uid = ?", (origin, uid))
    conn.execute("DELETE FROM fed_missing WHERE origin = ? AND uid = ?", (origin, uid))
    conn.execute(
        "INSERT INTO fed_tombstones (origin, uid, hash) VALUES (?, ?, ?)"
        " ON CONFLICT (origin, uid) DO UPDATE SET hash = coalesce(hash, excluded.hash)",
        (origin, uid, withdrawn),
    )
    # A tombstone deletes the mirrored copy of that record (the same uid in the same bytes)
    # under whichever origin holds it, and nothing brings it back. A copy of another uid
    # is not this withdrawal's: a peer listing another co-op's hash under a decoy uid and
    # "withdrawing" it must not delete that co-op's record here.
    freed = {
        r[0]
        for r in conn.execute(
            "SELECT hash FROM mirror_records WHERE (origin = ? AND uid = ?) OR (hash = ? AND uid = ?)",
            (origin, uid, withdrawn, uid),
        )
    }
    deleted: int = conn.execute(
        "DELETE FROM mirror_records WHERE (origin = ? AND uid = ?) OR (hash = ? AND uid = ?)",
        (origin, uid, withdrawn, uid),
    ).rowcount
    if withdrawn is not None:
        # A relabelled copy of the same bytes (a row its bytes disagree with, kept before
        # receipt checked it) is no honest co-op's record: it goes with the withdrawal.
        for other, *terms, data in conn.execute(
            "SELECT origin, uid, license, ai_use, eval, scope, record FROM mirror_records"
            " WHERE hash = ? AND origin != ?",
            (withdrawn, origin),
        ).fetchall():
            if mirror_facts(other, terms, bytes(data)) is None:
                deleted += conn.execute(
                    "DELETE FROM mirror_records WHERE hash = ? AND origin = ?", (withdrawn, other)
                ).rowcount
                freed.add(withdrawn)
    for digest in freed:
        # No copy held any more: the entries listing it are missing again where they may be.
        _index_missing(conn, "e.hash = ?", (digest,))
    if deleted:
        scrub_after_commit()  # no image of the withdrawn text left in the write-ahead log


class LockedBook(Book):
    """The book, one decision at a time: concurrent rounds and peer pushes cannot split a
    sequence.  The lock covers decisions only, never a network call (two nodes syncing with
    each other would otherwise wait on each other)."""

    def __init__(self, *args: Any, lock: threading.RLock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = lock

    def receive(self, envelopes: Iterable[bytes], *, now: int) -> list[Decision]:
        with self._lock:
            return super().receive(envelopes, now=now)

    def accept_records(
        self, wanted: Sequence[tuple[str, Entry]], got: Mapping[str, bytes]
    ) -> list[RecordRefusal]:
        with self._lock:
            return super().accept_records(wanted, got)

    def record_wants(self, *, limit: int = 1000) -> list[tuple[str, Entry]]:
        # Under the lock: rounds run peers at once, and a manifest received between reading an
        # origin's entries and marking it complete must not leave it marked complete.
        with self._lock:
            return super().record_wants(limit=limit)
