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
from coop.federation.gossip import RecordRefusal
from coop.federation.manifest import PAYLOAD_TYPE
from coop.governance import Audience, CollectiveState, EvalConsent, License, Scope, disclose
from coop.governance.envelope import open_envelope
from coop.node.policy import (
    HEAD_COLUMNS,
    OWN_FACTS,
    head_from_row,
    mirror_facts,
    origin_states,
    own_facts,
    record_uid,
)
from coop.node.storage.store import Store
from coop.node.storage.writer import scrub_after_commit

__all__ = [
    "DeclaredState",
    "LockedBook",
    "SqliteBookStore",
    "declared_state",
    "envelope_at",
    "fetch_rows",
    "latest_release",
    "manifest_rows",
    "mark_listed",
    "mirrored_rows",
    "origin_rows",
    "pending",
]

_TAGS: Final = msgspec.json.Decoder(list[str])


def _placeholders(n: int) -> str:
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


def declared_state(envelope: bytes) -> DeclaredState:
    """The state a stored (already verified) manifest envelope declares."""
    _, payload = open_envelope(envelope, payload_type=PAYLOAD_TYPE, max_bytes=1 << 31)
    return msgspec.json.decode(payload, type=DeclaredState)


class SqliteBookStore:
    """A :class:`~coop.federation.gossip.BookStore` in the node's database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def heads(self) -> dict[str, Head]:
        rows = self.store.read(lambda c: c.execute(f"SELECT {HEAD_COLUMNS} FROM fed_origins").fetchall())
        return {r[0]: head_from_row(r) for r in rows}

    def reread_states(self) -> None:
        """Fill in the declared state of heads stored before it was kept (from the head manifest)."""
        rows = self.store.read(
            lambda c: c.execute(
                "SELECT o.origin, m.envelope FROM fed_origins o JOIN fed_manifests m"
                " ON m.origin = o.origin AND m.hash = o.hash WHERE o.embargo IS NULL"
            ).fetchall()
        )
        for origin, envelope in rows:
            declared = declared_state(bytes(envelope))
            self.store.write(
                lambda c, o=origin, d=declared: c.execute(  # type: ignore[misc]
                    "UPDATE fed_origins SET embargo = ?, quality_freeze = ?, federation = ? WHERE origin = ?",
                    (
                        msgspec.json.encode(d.state.embargo).decode(),
                        int(d.state.quality_freeze),
                        None if d.federation is None else msgspec.json.encode(d.federation).decode(),
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
                f"SELECT envelope FROM fed_manifests WHERE origin = ? AND hash IN ({_placeholders(len(hashes))})"
                " ORDER BY seq, hash",
                (origin, *hashes),
            ).fetchall()
        )
        return [bytes(r[0]) for r in rows]

    def apply(self, effects: Effects) -> None:
        self.store.write(lambda c: _apply(c, effects))

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
                    f"SELECT hash, record FROM mirror_records WHERE hash IN ({_placeholders(len(chunk))})",
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
                conn.execute(
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
                )

        self.store.write(write)

    def claims(self, hashes: Sequence[str]) -> dict[str, set[tuple[str, str]]]:
        out: dict[str, set[tuple[str, str]]] = {}
        for start in range(0, len(hashes), 300):
            chunk = list(hashes[start : start + 300])
            marks = _placeholders(len(chunk))
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


def _apply(conn: sqlite3.Connection, effects: Effects) -> None:
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
    for tomb in effects.tombstones:
        _withdraw(conn, origin, tomb.uid)


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
    conn.execute(
        "INSERT INTO fed_tombstones (origin, uid, hash) VALUES (?, ?, ?)"
        " ON CONFLICT (origin, uid) DO UPDATE SET hash = coalesce(hash, excluded.hash)",
        (origin, uid, withdrawn),
    )
    # A tombstone deletes the mirrored copy of that record (the same uid in the same bytes)
    # under whichever origin holds it, and nothing brings it back. A copy of another uid
    # is not this withdrawal's: a peer listing another co-op's hash under a decoy uid and
    # "withdrawing" it must not delete that co-op's record here.
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


# -- this node's own listing (what its next manifest adds and withdraws) ----------------------


def pending(conn: sqlite3.Connection, state: CollectiveState) -> tuple[list[Entry], list[Tombstone]]:
    """Records to list and tombstones to announce.

    A record is listed once a release cut admitted it and the policy lets it go to the
    co-ops of this federation now (never merely accepted; not during a freeze or under
    an embargo: it waits, unlisted).  Own records go alike to every pinned co-op, so one
    of them stands for all; with none pinned, federation scope has no one to go to yet.
    """
    rows = conn.execute(
        f"SELECT c.uid, c.record_sha256, c.license, c.ai_use, c.eval, c.scope, c.tags, c.language, t.record,"
        f" {OWN_FACTS} FROM contributions c JOIN contents t ON t.seq = c.seq"
        " WHERE c.admitted_in IS NOT NULL AND c.listed_seq IS NULL ORDER BY c.seq"
    ).fetchall()
    member = min(state.federation) if state.federation else None
    added = []
    for row in rows:
        facts = None if row[8] is None else own_facts(row[9:], bytes(row[8]))
        if facts is not None and disclose(facts, state, Audience.PEER, requester=member):
            added.append(entry_from_row(row))
    tombs = conn.execute(
        "SELECT t.uid, t.at FROM tombstones t JOIN contributions c ON c.uid = t.uid"
        " WHERE t.announced_seq IS NULL AND c.listed_seq IS NOT NULL"
    ).fetchall()
    return added, [Tombstone(uid=r[0], at=r[1]) for r in tombs]


def mark_listed(conn: sqlite3.Connection, seq: int, uids: list[str], tombstones: list[str]) -> None:
    """Records and tombstones the manifest ``seq`` carried, so the next one does not again."""
    conn.executemany(
        "UPDATE contributions SET listed_seq = ? WHERE uid = ? AND listed_seq IS NULL",
        [(seq, u) for u in uids],
    )
    conn.executemany("UPDATE tombstones SET announced_seq = ? WHERE uid = ?", [(seq, u) for u in tombstones])


def latest_release(conn: sqlite3.Connection) -> str | None:
    """The name of this node's latest release (``v7``), if it cut one."""
    row = conn.execute("SELECT max(version) FROM releases").fetchone()
    return None if row[0] is None else f"v{row[0]}"


# -- reading for pages and peers -----------------------------------------------------------------


def origin_rows(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """Every origin with its head, the entries it lists and the records mirrored here."""
    rows: list[tuple[Any, ...]] = conn.execute(
        "SELECT o.origin, o.coop, o.seq, o.hash, o.key, o.forked, o.embargo_whole, o.updated_at,"
        " (SELECT count(*) FROM fed_entries e WHERE e.origin = o.origin),"
        " (SELECT count(*) FROM mirror_records m WHERE m.origin = o.origin)"
        " FROM fed_origins o ORDER BY o.coop, o.origin"
    ).fetchall()
    return rows


def manifest_rows(conn: sqlite3.Connection, origin: str) -> list[tuple[Any, ...]]:
    """(seq, hash, in_chain, evidence, received_at) of every manifest kept from ``origin``."""
    rows: list[tuple[Any, ...]] = conn.execute(
        "SELECT seq, hash, in_chain, evidence, received_at FROM fed_manifests WHERE origin = ? ORDER BY seq, hash",
        (origin,),
    ).fetchall()
    return rows


def envelope_at(conn: sqlite3.Connection, origin: str, seq: int) -> bytes | None:
    """The envelope of ``origin``'s manifest ``seq`` (the chain's, where a fork left two)."""
    row = conn.execute(
        "SELECT envelope FROM fed_manifests WHERE origin = ? AND seq = ? ORDER BY in_chain DESC",
        (origin, seq),
    ).fetchone()
    return None if row is None else bytes(row[0])


def mirrored_rows(conn: sqlite3.Connection, origin: str, after: str, limit: int) -> list[tuple[Any, ...]]:
    """(uid, hash, license, ai_use, eval, scope, record) of ``origin`` held here, in uid order."""
    rows: list[tuple[Any, ...]] = conn.execute(
        "SELECT uid, hash, license, ai_use, eval, scope, record FROM mirror_records"
        " WHERE origin = ? AND uid > ? ORDER BY uid LIMIT ?",
        (origin, after, limit),
    ).fetchall()
    return rows


def fetch_rows(
    conn: sqlite3.Connection, chunk: list[str]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], dict[str, CollectiveState]]:
    """Own and mirrored rows holding these hashes, and the origins' states, in one snapshot."""
    marks = _placeholders(len(chunk))
    own = conn.execute(
        f"SELECT c.record_sha256, t.record, {OWN_FACTS} FROM contributions c JOIN contents t ON t.seq = c.seq"
        f" WHERE c.record_sha256 IN ({marks})",
        chunk,
    ).fetchall()
    mirrored = conn.execute(
        "SELECT hash, origin, record, uid, license, ai_use, eval, scope FROM mirror_records"
        f" WHERE hash IN ({marks})",
        chunk,
    ).fetchall()
    return own, mirrored, origin_states(conn)
