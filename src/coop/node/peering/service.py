"""The node's side of federation: the SQLite book store, own manifests, peers, the gossip loop.

The rules live in :mod:`coop.federation` (the book, the protocol); this module
keeps what they decide in the node's database, issues the node's own
manifests (listing what a release cut admitted), serves record bytes to the
peer asking as the disclosure policy allows (own records under this co-op's
state, mirrors under their origin's latest manifest), and runs rounds of
gossip over the httpx transport.
"""

from __future__ import annotations

import logging
import random
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate, parsedate_to_datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import msgspec

from coop.federation import (
    Book,
    Decision,
    Effects,
    Entry,
    GovernanceState,
    Head,
    HttpxTransport,
    ReplayCache,
    Responder,
    SyncReport,
    Tombstone,
    authority_of,
    build_manifest,
    seal_manifest,
    sign_request,
    sync_with,
    verify_request,
)
from coop.federation.errors import ClockSkewError, RequestAuthError
from coop.federation.gossip import (
    Accepted,
    Equivocation,
    RecordRefusal,
    Rejected,
    collective_state,
)
from coop.federation.httpsig import check_signature_headers
from coop.federation.manifest import PAYLOAD_TYPE
from coop.federation.protocol import PushMemo, PushReport
from coop.federation.transport import Request, Response, Transport
from coop.governance import (
    Attribution,
    AttributionMode,
    Audience,
    CollectiveState,
    Embargo,
    EvalConsent,
    License,
    RecordFacts,
    RecordState,
    Scope,
    disclose,
    public_key,
)
from coop.governance.envelope import open_envelope
from coop.node.collective.repository import audit, audit_head
from coop.node.errors import BusyError, InputError, NotFoundError, PayloadTooLargeError, StateError
from coop.node.members.attribution import PublicForms
from coop.node.peering.nonces import SqliteReplayCache
from coop.node.peering.refusals import SKEW_SHOWN, Refusal, recent_refusals, record_refusal, skew_text
from coop.node.storage.writer import scrub_after_commit

if TYPE_CHECKING:
    from coop.node.runtime import Node

__all__ = [
    "OWN_FACTS",
    "FederationService",
    "IssueReport",
    "OriginView",
    "PeerView",
    "SqliteBookStore",
    "mirror_facts",
    "origin_states",
    "own_facts",
    "own_row_facts",
    "record_choices",
]

log = logging.getLogger("coop.federation")

_DAY: Final = 86_400

# The largest request body each protocol step takes, checked before it is read (``push`` carries
# manifests: up to ``federation.max_response_bytes``, as much as a pull may bring).  A summary
# is ~80 bytes, a records pull at most 256 hashes (~17 KB); a digest or a manifests pull holds
# ~150 bytes per origin a node knows of.
STEP_CAPS: Final = {
    "summary": 4 * 1024,
    "digest": 4 * 1024 * 1024,
    "manifests": 4 * 1024 * 1024,
    "records": 256 * 1024,
}
PARALLEL_PEERS: Final = 8  # peers exchanged with at once in a round
_REFUSALS_SHOWN: Final = 5
_PUSH_REPORT: Final = msgspec.json.Decoder(PushReport)
_KEYID: Final = re.compile(r'keyid="([0-9a-f]{64})"')


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


def _entry(row: Sequence[Any]) -> Entry:
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


_TAGS: Final = msgspec.json.Decoder(list[str])
_EMBARGO: Final = msgspec.json.Decoder(Embargo)
_FEDERATION: Final = msgspec.json.Decoder(tuple[str, ...])
_HEAD_COLUMNS: Final = (
    "origin, seq, hash, key, forked, embargo_whole, coop, embargo, quality_freeze, federation"
)


def _head(row: Sequence[Any]) -> Head:
    """A head from a ``fed_origins`` row (``_HEAD_COLUMNS``)."""
    return Head(
        seq=row[1],
        hash=row[2],
        key=row[3],
        forked=bool(row[4]),
        embargo_whole=bool(row[5]),
        coop=row[6],
        # NULL: a row from before the column, not yet read again from its head manifest.
        embargo=_EMBARGO.decode(row[7]) if row[7] is not None else Embargo(on=bool(row[5])),
        quality_freeze=bool(row[8]),
        federation=None if row[9] is None else _FEDERATION.decode(row[9]),
    )


def origin_states(conn: sqlite3.Connection) -> dict[str, CollectiveState]:
    """Each origin's collective state, as its latest verified manifest declares it."""
    rows = conn.execute(f"SELECT {_HEAD_COLUMNS} FROM fed_origins").fetchall()
    return {row[0]: collective_state(_head(row)) for row in rows}


class _Choices(msgspec.Struct):
    """What the disclosure policy reads from a record's bytes (the rest is skipped)."""

    attribution: Attribution
    tags: tuple[str, ...] = ()
    language: str | None = None


_CHOICES: Final = msgspec.json.Decoder(_Choices)


def record_choices(data: bytes) -> tuple[AttributionMode, tuple[str, ...], str | None] | None:
    """A record's attribution mode, tags and language, read from its canonical bytes
    (None when the bytes are not a record: nothing is disclosed of them)."""
    try:
        choices = _CHOICES.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return choices.attribution.mode, choices.tags, choices.language


class _Described(msgspec.Struct):
    """What a record's bytes say of themselves, for the policy (the rest is skipped)."""

    uid: str
    license: License
    ai_use: str
    eval: EvalConsent
    scope: Scope
    attribution: Attribution
    tags: tuple[str, ...] = ()
    language: str | None = None


_DESCRIBED: Final = msgspec.json.Decoder(_Described)


def mirror_facts(origin: str, row: Sequence[Any], data: bytes) -> RecordFacts | None:
    """A mirrored record as the policy sees it: listed by its origin (so a cut there admitted
    it), live until a tombstone deletes it.

    Its terms are the record's own, read from its bytes, never the row's (uid, license, ai_use,
    eval, scope): a row the bytes disagree with (a peer's relabelling, kept before receipt
    checked it) is nothing the policy discloses (None).
    """
    try:
        own = _DESCRIBED.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if (own.uid, own.license.value, own.ai_use, own.eval.value, own.scope.value) != tuple(row[:5]):
        return None
    return RecordFacts(
        uid=own.uid,
        license=own.license,
        ai_use=own.ai_use,
        eval=own.eval,
        scope=own.scope,
        attribution=own.attribution.mode,
        state=RecordState.ACCEPTED,
        admitted=True,
        tags=own.tags,
        language=own.language,
        origin=origin,
    )


def own_facts(row: Sequence[Any], data: bytes) -> RecordFacts | None:
    """One of this node's records as the policy sees it, from its :data:`OWN_FACTS` columns and
    its bytes (for the attribution); None when the bytes are not a record."""
    choices = record_choices(data)
    return None if choices is None else own_row_facts(row, attribution=choices[0])


def own_row_facts(
    row: Sequence[Any], *, attribution: AttributionMode = AttributionMode.ANONYMOUS
) -> RecordFacts:
    """One of this node's records from its :data:`OWN_FACTS` columns alone.

    Without the record's bytes the attribution is taken at its strictest (anonymous): right
    wherever the answer does not depend on it (admission never does).
    """
    return RecordFacts(
        uid=row[0],
        scope=Scope(row[1]),
        license=License(row[2]),
        ai_use=row[3],
        eval=EvalConsent(row[4]),
        attribution=attribution,
        state=RecordState(row[5]),
        admitted=row[6] is not None,
        tags=tuple(_TAGS.decode(row[7])),
        language=row[8],
    )


# The columns own_facts reads, from ``contributions c``.
OWN_FACTS: Final = "c.uid, c.scope, c.license, c.ai_use, c.eval, c.state, c.admitted_in, c.tags, c.language"


class SqliteBookStore:
    """A :class:`~coop.federation.gossip.BookStore` in the node's database."""

    def __init__(self, node: Node) -> None:
        self.store = node.store

    def heads(self) -> dict[str, Head]:
        rows = self.store.read(lambda c: c.execute(f"SELECT {_HEAD_COLUMNS} FROM fed_origins").fetchall())
        return {r[0]: _head(r) for r in rows}

    def reread_states(self) -> None:
        """Fill in the declared state of heads stored before it was kept (from the head manifest)."""
        rows = self.store.read(
            lambda c: c.execute(
                "SELECT o.origin, m.envelope FROM fed_origins o JOIN fed_manifests m"
                " ON m.origin = o.origin AND m.hash = o.hash WHERE o.embargo IS NULL"
            ).fetchall()
        )
        for origin, envelope in rows:
            _, payload = open_envelope(bytes(envelope), payload_type=PAYLOAD_TYPE, max_bytes=1 << 31)
            declared = msgspec.json.decode(payload, type=_StateOnly)
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
        return {r[0]: _entry(r) for r in rows}

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
                try:
                    own_uid = _DESCRIBED.decode(data).uid
                except (msgspec.DecodeError, msgspec.ValidationError):
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


def _mirror_rows(conn: sqlite3.Connection, chunk: list[str]) -> list[tuple[str, bytes]]:
    return conn.execute(
        f"SELECT hash, record FROM mirror_records WHERE hash IN ({_placeholders(len(chunk))})", chunk
    ).fetchall()


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
        # The hash the entry listed (or the copy held) is kept with the tombstone: the same bytes
        # stay out under any other origin's entry, and a copy held under one is deleted too.
        entry = conn.execute(
            "SELECT hash FROM fed_entries WHERE origin = ? AND uid = ?", (origin, tomb.uid)
        ).fetchone()
        held = conn.execute(
            "SELECT hash FROM mirror_records WHERE origin = ? AND uid = ?", (origin, tomb.uid)
        ).fetchone()
        withdrawn = entry[0] if entry else held[0] if held else None
        conn.execute("DELETE FROM fed_entries WHERE origin = ? AND uid = ?", (origin, tomb.uid))
        conn.execute(
            "INSERT INTO fed_tombstones (origin, uid, hash) VALUES (?, ?, ?)"
            " ON CONFLICT (origin, uid) DO UPDATE SET hash = coalesce(hash, excluded.hash)",
            (origin, tomb.uid, withdrawn),
        )
        # A tombstone deletes the mirrored copy of that record (the same uid in the same bytes)
        # under whichever origin holds it, and nothing brings it back. A copy of another uid
        # is not this withdrawal's: a peer listing another co-op's hash under a decoy uid and
        # "withdrawing" it must not delete that co-op's record here.
        deleted = conn.execute(
            "DELETE FROM mirror_records WHERE (origin = ? AND uid = ?) OR (hash = ? AND uid = ?)",
            (origin, tomb.uid, withdrawn, tomb.uid),
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


class _LockedBook(Book):
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


class IssueReport(msgspec.Struct, frozen=True):
    seq: int
    hash: str
    added: int
    tombstones: int
    release: str | None


class PeerView(msgspec.Struct, frozen=True):
    node_id: str
    url: str
    name: str | None
    added_at: int
    last_contact: int | None
    last_error: str | None
    contacts: int
    failures: int
    seq: int | None
    forked: bool
    # This node's clock minus the peer's, in seconds, as last measured (its Date, or its refusal).
    clock_skew: int | None = None
    # What this node refused of the peer lately (requests, manifests), newest first.
    refused: tuple[Refusal, ...] = ()


class OriginView(msgspec.Struct, frozen=True):
    origin: str
    coop: str
    seq: int
    hash: str
    key: str
    forked: bool
    embargo_whole: bool
    entries: int
    mirrored: int
    updated_at: int
    self: bool
    # The collective switches its latest manifest declares (what peers honour for its records).
    embargo: Embargo = Embargo()
    quality_freeze: bool = False


class FederationService:
    """One node's federation: its book, its manifests, its peers and its gossip rounds."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.self_id = node.identity.node_id
        self.store = SqliteBookStore(node)
        self._lock = threading.RLock()
        self.book = _LockedBook(self.self_id, {}, self.store, lock=self._lock)
        # Seen nonces live in the database: a captured request stays refused after a restart.
        self.replay: ReplayCache = SqliteReplayCache(node.store)
        self.rng = random.Random(secrets.randbits(64))
        self._pool: ThreadPoolExecutor | None = None
        # Per peer, what was pushed to it: a peer whose digest never advances is not re-pushed.
        self._pushed: dict[str, PushMemo] = {}
        self._fork_logged = False  # the own-fork halt is logged once per process, not every round
        self.store.reread_states()
        self.refresh_pins()

    # -- peers -------------------------------------------------------------------------------

    def refresh_pins(self) -> None:
        rows = self.node.store.read(lambda c: c.execute("SELECT node_id FROM peers").fetchall())
        pins = {r[0]: r[0] for r in rows}
        pins[self.self_id] = self.self_id
        self.book.pinned = pins

    def remove_peer(self, node_id: str, *, actor: str) -> str:
        """Unpin a peer: no more gossip with it, and its manifests are no longer accepted.

        What was mirrored from it stays until its tombstones say otherwise; pin it again
        (under a new key, after a compromise) with :meth:`add_peer`.  Returns the full id.
        """
        prefix = node_id.strip().lower()
        if len(prefix) < 8:
            raise InputError("give at least the first 8 hex digits of the peer's node id", field="NODE_ID")

        def write(conn: sqlite3.Connection) -> str:
            rows = conn.execute(
                "SELECT node_id, url FROM peers WHERE node_id LIKE ? || '%'", (prefix,)
            ).fetchall()
            if not rows:
                raise NotFoundError(f"no pinned peer with id {prefix}", field="NODE_ID")
            if len(rows) > 1:
                raise InputError(f"{prefix} matches {len(rows)} peers: give more of the id", field="NODE_ID")
            full, url = rows[0]
            conn.execute("DELETE FROM peers WHERE node_id = ?", (full,))
            audit(
                conn,
                seed=self.node.seed,
                at=self.node.now(),
                actor=actor,
                action="peer.remove",
                payload={"node_id": full, "url": url},
            )
            return str(full)

        removed = self.node.store.write(write)
        self.refresh_pins()
        return removed

    def add_peer(self, url: str, node_id: str, *, name: str | None, actor: str) -> PeerView:
        url = url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")) or len(url) > 500:
            raise InputError("a peer URL starts with http:// or https://", field="URL")
        node_id = node_id.strip().lower()
        if len(node_id) != 64 or any(ch not in "0123456789abcdef" for ch in node_id):
            raise InputError("a node id is 64 hex digits (coop identity show on the peer)", field="--key")
        if node_id == self.self_id:
            raise InputError("that is this node's own id", field="--key")
        now = self.node.now()

        def write(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM peers WHERE node_id = ? OR url = ?", (node_id, url)).fetchone():
                raise InputError("this peer (id or URL) is already pinned", field="--key")
            conn.execute(
                "INSERT INTO peers (url, node_id, name, added_at) VALUES (?, ?, ?, ?)",
                (url, node_id, name, now),
            )
            audit(
                conn,
                seed=self.node.seed,
                at=now,
                actor=actor,
                action="peer.add",
                payload={"node_id": node_id, "url": url},
            )

        self.node.store.write(write)
        self.refresh_pins()
        return next(p for p in self.peers() if p.node_id == node_id)

    def peers(self) -> list[PeerView]:
        rows = self.node.store.read(
            lambda c: c.execute(
                "SELECT p.node_id, p.url, p.name, p.added_at, p.last_contact, p.last_error, p.contacts, p.failures,"
                " o.seq, coalesce(o.forked, 0), p.clock_skew"
                " FROM peers p LEFT JOIN fed_origins o ON o.origin = p.node_id ORDER BY p.id"
            ).fetchall()
        )
        refused = {
            r[0]: tuple(self.node.store.read(partial(recent_refusals, node_id=r[0], limit=_REFUSALS_SHOWN)))
            for r in rows
        }
        return [
            PeerView(
                node_id=r[0],
                url=r[1],
                name=r[2],
                added_at=r[3],
                last_contact=r[4],
                last_error=r[5],
                contacts=r[6],
                failures=r[7],
                seq=r[8],
                forked=bool(r[9]),
                clock_skew=r[10],
                refused=refused[r[0]],
            )
            for r in rows
        ]

    def key_of(self, keyid: str) -> bytes | None:
        """The public key of a pinned peer signing a request (its id, or its rotated key)."""
        return None if self.node_of(keyid) is None else bytes.fromhex(keyid)

    def node_of(self, keyid: str) -> str | None:
        """The node id of the pinned peer whose key this is (its id, or its rotated key)."""
        if keyid in self.book.pinned and keyid != self.self_id:
            return keyid
        heads = self.store.heads()
        for origin, head in heads.items():
            if head.key == keyid and origin in self.book.pinned and origin != self.self_id:
                return origin
        return None

    def federation(self) -> tuple[str, ...]:
        """This co-op's federation: the node ids of the peers it pinned (who federation scope reaches)."""
        return tuple(sorted(origin for origin in self.book.pinned if origin != self.self_id))

    def own_state(self) -> CollectiveState:
        """This co-op's collective state, as the disclosure policy reads it for its own records."""
        settings = self.node.settings().settings
        return CollectiveState(
            embargo=settings.embargo,
            quality_freeze=settings.quality_freeze,
            federation=frozenset(self.federation()),
        )

    # -- own manifests -------------------------------------------------------------------------

    def issue(self, *, release: str | None = None, force: bool = False) -> IssueReport | None:
        """Issue the next manifest if anything changed (records, tombstones, settings) or it nears expiry."""
        with self._lock, self.node.data.lock("manifest", purpose="issuing a manifest", wait=30):
            return self._issue(release=release, force=force)

    def own_fork(self) -> str | None:
        """Why this node issues no manifests, in one line, when its own chain was forked (another
        manifest signed with its key at a sequence it used); None when it is not."""
        head = self.store.heads().get(self.self_id)
        if head is None or not head.forked:
            return None
        seqs = sorted({seq for seq, _ in self.store.evidence().get(self.self_id, ())})
        at = f" at sequence {', '.join(map(str, seqs))}" if seqs else ""
        return (
            f"this node's own manifest chain was forked{at} (manifests signed with its key that it did"
            " not issue: a copy of its data directory or its key): it issues no manifests until the key"
            f" is rotated; stop every other copy, then run: coop identity rotate {self.node.data.root}"
        )

    def _next_own_seq(self, head: Head) -> int:
        """The sequence of this node's next manifest: after its head, and after every sequence a
        fork of its chain took (a rotation skips them; its peers hold them as evidence)."""
        if not head.forked:
            return head.seq + 1
        return max([head.seq, *(seq for seq, _ in self.store.evidence().get(self.self_id, ()))]) + 1

    def _issue(self, *, release: str | None, force: bool) -> IssueReport | None:
        node = self.node
        now = node.now()
        settings = node.settings()
        head = self.store.heads().get(self.self_id)
        halted = self.own_fork()
        if halted is not None:
            # Each attempt would be refused as one more fork of its own chain: none is made.
            if not self._fork_logged:
                log.error("%s", halted)
                self._fork_logged = True
            return None
        audit_entry = node.store.read(audit_head)
        state = GovernanceState(
            settings_digest=settings.digest,
            embargo=settings.settings.embargo,
            quality_freeze=settings.settings.quality_freeze,
            audit_seq=0 if audit_entry is None else audit_entry.seq,
            audit_head="0" * 64 if audit_entry is None else audit_entry.hash,
        )
        federation = self.federation()
        added, tombstones = node.store.read(lambda c: _pending(c, self.own_state()))
        lifetime = node.config.federation.manifest_lifetime_days * _DAY
        previous = self._own_state(head)
        stale = previous is None or previous[1] - now < lifetime // 4
        changed = (
            previous is None
            or previous[0].settings_digest != state.settings_digest
            or previous[0].embargo != state.embargo
            or previous[0].quality_freeze != state.quality_freeze
            or previous[2] != federation
        )
        if not (force or added or tombstones or changed or stale):
            return None
        complete = self.store.entries(self.self_id)
        for tomb in tombstones:
            complete.pop(tomb.uid, None)
        complete.update({e.uid: e for e in added})
        seq = 1 if head is None else head.seq + 1
        payload = build_manifest(
            origin=self.self_id,
            key=node.identity.public_key.hex(),
            coop=node.config.node.name,
            seq=seq,
            prev="0" * 64 if head is None else head.hash,
            issued_at=now,
            lifetime=lifetime,
            release=release if release is not None else self._latest_release(),
            added=added,
            complete=complete,
            tombstones=tombstones,
            state=state,
            federation=federation,
        )
        envelope = seal_manifest(payload, [node.seed])
        decision = self.book.receive([envelope], now=now)
        if not decision or decision[0].__class__.__name__ != "Accepted":
            raise RuntimeError(f"this node refused its own manifest: {decision}")
        node.store.write(lambda c: _mark_listed(c, seq, [e.uid for e in added], [t.uid for t in tombstones]))
        digest = self.store.heads()[self.self_id].hash
        log.info("issued manifest %d (%d added, %d tombstones)", seq, len(added), len(tombstones))
        return IssueReport(
            seq=seq, hash=digest, added=len(added), tombstones=len(tombstones), release=release
        )

    def rotate_key(self, *, actor: str) -> IssueReport:
        """Announce a new signing key in a manifest signed by the old and the new key.

        One transaction: the new key waits beside the old one until this node's own book has
        accepted the rotation manifest; only then does it sign.  On any failure before that
        the new key is removed and the old one stays active (a StateError says why).
        """
        with self._lock, self.node.data.lock("manifest", purpose="issuing a manifest", wait=30):
            node = self.node
            now = node.now()
            head = self.store.heads().get(self.self_id)
            if head is None:
                self._issue(release=None, force=True)
                head = self.store.heads()[self.self_id]
            old = node.seed
            new = node.data.stage_key()
            try:
                previous = self._own_state(head)
                assert previous is not None
                payload = build_manifest(
                    origin=self.self_id,
                    key=public_key(old).hex(),
                    coop=node.config.node.name,
                    seq=self._next_own_seq(head),
                    prev=head.hash,
                    issued_at=now,
                    lifetime=node.config.federation.manifest_lifetime_days * _DAY,
                    release=self._latest_release(),
                    added=[],
                    complete=self.store.entries(self.self_id),
                    tombstones=[],
                    state=previous[0],
                    rotate_to=public_key(new).hex(),
                    federation=self.federation(),
                )
                decision = self.book.receive([seal_manifest(payload, [old, new])], now=now)
                if not decision or not isinstance(decision[0], Accepted):
                    why = _refusal(decision[0]) if decision else "no decision"
                    raise StateError(
                        f"this node refused its own rotation manifest ({why}); the key was not rotated"
                    )
            except BaseException:
                node.data.discard_staged_key()
                raise
            # Accepted and stored: from here the new key is the one peers expect (a crash
            # before the switch is finished by settle_rotation when the node next opens).
            node.data.commit_staged_key()
            node.reload_identity()
            node.store.write(
                lambda c: audit(
                    c,
                    seed=node.seed,
                    at=now,
                    actor=actor,
                    action="identity.rotate",
                    payload={"old_key": public_key(old).hex(), "new_key": public_key(new).hex()},
                )
            )
            accepted = self.store.heads()[self.self_id]
            self._fork_logged = False
            return IssueReport(seq=accepted.seq, hash=accepted.hash, added=0, tombstones=0, release=None)

    def settle_rotation(self) -> None:
        """Finish or roll back a rotation a crash cut short: switch to the staged key if this
        node's accepted chain announces it, else remove it (the old key stays active)."""
        try:
            # A rotation running in another process holds this lock: never settle under it.
            with self.node.data.lock("manifest", purpose="issuing a manifest", wait=30):
                self._settle_rotation()
        except BusyError as exc:
            log.warning("a key rotation is still running: %s", exc.message)

    def _settle_rotation(self) -> None:
        staged = self.node.data.staged_key()
        if staged is None:
            return
        head = self.store.heads().get(self.self_id)
        if head is not None and head.key == public_key(staged).hex():
            self.node.data.commit_staged_key()
            self.node.reload_identity()
            log.warning("finished a key rotation that was cut short: signing with the announced key")
        else:
            self.node.data.discard_staged_key()
            log.warning("removed the new key of a rotation that was never announced: the old key signs")

    def _own_state(self, head: Head | None) -> tuple[GovernanceState, int, tuple[str, ...] | None] | None:
        if head is None:
            return None
        (data,) = self.store.envelopes(self.self_id, [head.hash])
        _, payload = open_envelope(data, payload_type=PAYLOAD_TYPE, max_bytes=1 << 31)
        manifest = msgspec.json.decode(payload, type=_StateOnly)
        return manifest.state, manifest.expires_at, manifest.federation

    def _latest_release(self) -> str | None:
        row = self.node.store.read(lambda c: c.execute("SELECT max(version) FROM releases").fetchone())
        return None if row[0] is None else f"v{row[0]}"

    # -- serving peers ---------------------------------------------------------------------------

    def fetch(self, hashes: list[str], *, requester: str | None = None) -> tuple[dict[str, bytes], list[str]]:
        """Record bytes for the peer ``requester``: what the disclosure policy lets go to it.

        Own records under this co-op's state (admitted by a cut, outside embargo and freeze,
        federation scope only to the co-ops it pinned); mirrors under their origin's latest
        manifest (federation scope only to the co-ops the origin pinned).  The rest is refused.
        """
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, bytes] = {}
        # Records stored before anonymity held carry the member's hash where the policy's form
        # has none; their listed hash pins those bytes, so they are withheld, never sent.
        forms = self.node.store.read(PublicForms.load)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            own, mirrored, states = self.node.store.read(partial(_fetch_rows, chunk=chunk))
            mine = self.own_state()
            for digest, data, *row in own:
                facts = None if data is None else own_facts(row, bytes(data))
                if (
                    facts is not None
                    and disclose(facts, mine, Audience.PEER, requester=requester)
                    and not forms.changes(bytes(data))
                ):
                    found[digest] = bytes(data)
            for digest, origin, data, *row in mirrored:
                facts = mirror_facts(origin, row, bytes(data))
                state = states.get(origin)
                if (
                    digest not in found
                    and facts is not None
                    and state is not None
                    and disclose(facts, state, Audience.PEER, requester=requester)
                    and not forms.changes(bytes(data))
                ):
                    found[digest] = bytes(data)
        return found, [h for h in wanted if h not in found]

    def handle(
        self,
        step: str,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes,
        *,
        listening: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> bytes:
        """Authenticate a peer's request (RFC 9421) and answer it.

        A refused request or pushed manifest is kept (:mod:`coop.node.peering.refusals`): the
        security log, the peer's ``last_error`` and its recent refusals say what and why.

        The signature must cover one of this node's own addresses: its ``public_url`` or
        ``listening`` (the socket the request arrived on, when given).
        """
        now = self.node.now()
        try:
            keyid = verify_request(
                method,
                url,
                headers,
                body,
                key_of=self.key_of,
                now=now,
                replay=self.replay,
                authorities=self._authorities(listening),
            )
        except RequestAuthError as exc:
            self._refused_request(step, headers, exc, now=now, ip=ip, user_agent=user_agent)
            raise
        requester = self.node_of(keyid)
        answer = Responder(self.book, self).handle(step, body, now=now, requester=requester)
        if requester is not None:
            # Booked under the peer's node id, which its signing key is not once it rotated.
            self.node.store.write(lambda c: _contact(c, requester, None, now))
        if step == "push":
            rejected = _PUSH_REPORT.decode(answer).rejected
            if rejected:
                self._refused_manifests(requester, keyid, "push", rejected, ip=ip, user_agent=user_agent)
        return answer

    def step_cap(self, step: str) -> int:
        """The largest request body a protocol step takes (a push carries manifests, the rest is small)."""
        return self.node.config.federation.max_response_bytes if step == "push" else STEP_CAPS[step]

    def _authorities(self, listening: str | None) -> frozenset[str]:
        """The ``@authority`` values a peer's signature may cover: this node's ``public_url``,
        and ``listening`` (the socket the request arrived on), when given."""
        own = {authority_of(self.node.config.node.public_url)}
        if listening is not None:
            own.add(authority_of(listening))
        return frozenset(own)

    def admit(
        self,
        step: str,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        length: int | None,
        listening: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        """What is checked before a peer's request body is read: the signature headers are well
        formed, name a pinned peer's key, verify (they cover the Content-Digest header, not the
        body) and are valid now (else :class:`RequestAuthError`), and the announced length is
        within the step's cap (else :class:`PayloadTooLargeError`)."""
        now = self.node.now()
        try:
            sig = check_signature_headers(
                method, url, headers, key_of=self.key_of, now=now, authorities=self._authorities(listening)
            )
        except RequestAuthError as exc:
            self._refused_request(step, headers, exc, now=now, ip=ip, user_agent=user_agent)
            raise
        cap = self.step_cap(step)
        if length is not None and length > cap:
            message = f"a {step} request is at most {cap} bytes (this one announced {length})"
            refusal = Refusal(
                at=now,
                step=step,
                reason="too_large",
                detail=message,
                node_id=self.node_of(sig.keyid),
                keyid=sig.keyid,
            )
            self.node.store.write(partial(record_refusal, refusal=refusal, ip=ip, user_agent=user_agent))
            raise PayloadTooLargeError(message, field="body")

    def _refused_request(
        self,
        step: str,
        headers: Mapping[str, str],
        exc: RequestAuthError,
        *,
        now: int,
        ip: str | None,
        user_agent: str | None,
    ) -> None:
        # Only a signature that verified names who sent the request: anything else is kept
        # under no peer (the key id it claimed, for the record), so a stranger claiming a
        # peer's key id writes neither that peer's last_error, refusals nor clock skew.
        keyid = exc.signer or _claimed_keyid(headers)
        node_id = None if exc.signer is None else self.node_of(exc.signer)
        offset = exc.offset if isinstance(exc, ClockSkewError) else None
        reason = "clock_skew" if offset is not None else "unauthenticated"
        refusal = Refusal(at=now, step=step, reason=reason, detail=exc.message, node_id=node_id, keyid=keyid)

        def write(conn: sqlite3.Connection) -> None:
            record_refusal(conn, refusal, ip=ip, user_agent=user_agent)
            if node_id is not None and offset is not None:
                # The signer's clock minus ours; kept as ours minus the peer's, like our own measures.
                conn.execute("UPDATE peers SET clock_skew = ? WHERE node_id = ?", (-offset, node_id))

        self.node.store.write(write)

    def _refused_manifests(
        self,
        node_id: str | None,
        keyid: str | None,
        step: str,
        reasons: Sequence[str],
        *,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        now = self.node.now()
        counts: dict[str, int] = {}
        for reason in reasons:
            counts[reason] = counts.get(reason, 0) + 1

        def write(conn: sqlite3.Connection) -> None:
            for reason, n in sorted(counts.items()):
                detail = f"{n} manifest{'s' if n > 1 else ''} refused: {reason}"
                record_refusal(
                    conn,
                    Refusal(at=now, step=step, reason=reason, detail=detail, node_id=node_id, keyid=keyid),
                    ip=ip,
                    user_agent=user_agent,
                )

        self.node.store.write(write)

    def _refused_records(self, node_id: str, refusals: Sequence[RecordRefusal]) -> None:
        """Keep record bytes a peer served that this node would not keep, one refusal each
        (a few per exchange: the book does not ask for a refused entry again)."""
        now = self.node.now()

        def write(conn: sqlite3.Connection) -> None:
            for item in refusals:
                detail = f"record {item.uid!r} ({item.hash[:12]}) listed by {item.origin[:12]}: {item.detail}"
                record_refusal(
                    conn, Refusal(at=now, step="records", reason=item.reason, detail=detail, node_id=node_id)
                )

        self.node.store.write(write)

    # -- gossip rounds -----------------------------------------------------------------------------

    def signer(self, method: str, url: str, body: bytes) -> dict[str, str]:
        now = self.node.now()
        headers = sign_request(
            method, url, body, seed=self.node.seed, now=now, nonce=secrets.token_urlsafe(18)
        )
        # Our clock, for the peer to measure the offset when it refuses us for time.
        headers["Date"] = formatdate(now, usegmt=True)
        return headers

    def gossip_round(self, *, every_peer: bool = False) -> list[SyncReport]:
        """Issue a manifest if something changed, then gossip with ``fanout`` peers at random
        (or with every peer).  One round at a time per data directory, across processes."""
        try:
            with self.node.data.lock("gossip", purpose="a gossip round", wait=0 if not every_peer else 60):
                return self._round(every_peer=every_peer)
        except BusyError:
            if every_peer:
                raise
            return []  # another process (coop sync) is gossiping for this node right now

    def _round(self, *, every_peer: bool) -> list[SyncReport]:
        self.refresh_pins()
        self.issue()
        candidates = self.peers()
        with self._lock:  # a removed peer's push memo goes with it
            self._pushed = {
                p.node_id: self._pushed[p.node_id] for p in candidates if p.node_id in self._pushed
            }
        fanout = self.node.config.federation.fanout
        chosen = candidates if every_peer else self.rng.sample(candidates, min(fanout, len(candidates)))
        if not chosen:
            return []
        # Peers are exchanged with at once (a bounded pool): a slow one costs its slot, not the
        # round; each request ends by its own deadline (the transport's), whatever the peer sends,
        # and all of one exchange's requests by ``exchange_budget_seconds``.
        transport = HttpxTransport(max_connections=2 * PARALLEL_PEERS)
        try:
            futures = [self._gossip_pool().submit(self._sync_one, peer, transport) for peer in chosen]
            return [future.result() for future in futures]
        finally:
            transport.close()

    def _gossip_pool(self) -> ThreadPoolExecutor:
        # One pool for the service's life: its threads (and their database readers) are reused.
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=PARALLEL_PEERS, thread_name_prefix="coop-gossip")
            return self._pool

    def _push_memo(self, node_id: str) -> PushMemo:
        with self._lock:
            return self._pushed.setdefault(node_id, PushMemo())

    def _sync_one(self, peer: PeerView, transport: HttpxTransport) -> SyncReport:
        """One exchange with one peer; what it moved, what went wrong and the peer's clock are kept."""
        observed = _Observed(transport, self.node.now)
        report = sync_with(
            peer.url,
            self.book,
            observed,
            signer=self.signer,
            now=self.node.now(),
            timeout=self.node.config.federation.request_timeout_seconds,
            max_bytes=self.node.config.federation.max_response_bytes,
            peer=peer.node_id,
            budget=self.node.config.federation.exchange_budget_seconds,
            memo=self._push_memo(peer.node_id),
        )
        if report.error and observed.problem:
            report.error = f"{report.error}: {observed.problem}"
        if report.error and observed.refused_for_time and observed.skew is not None:
            report.error = f"{report.error} ({skew_text(observed.skew)})"

        def write(conn: sqlite3.Connection) -> None:
            _contact(conn, node_id=peer.node_id, error=report.error, now=self.node.now())
            if observed.skew is not None:
                conn.execute(
                    "UPDATE peers SET clock_skew = ? WHERE node_id = ?", (observed.skew, peer.node_id)
                )

        self.node.store.write(write)
        if report.pulled.rejected:
            self._refused_manifests(peer.node_id, None, "manifests", report.pulled.rejected)
        if report.refusals:
            self._refused_records(peer.node_id, report.refusals)
        if report.error:
            log.warning("gossip with %s failed: %r", peer.url, report.error)
        return report

    def skewed_peers(self) -> list[dict[str, Any]]:
        """Peers whose clock was last measured :data:`SKEW_SHOWN` seconds or more from ours."""
        return [
            {"node_id": p.node_id, "clock_skew": p.clock_skew, "text": skew_text(p.clock_skew)}
            for p in self.peers()
            if p.clock_skew is not None and abs(p.clock_skew) >= SKEW_SHOWN
        ]

    # -- browsing ----------------------------------------------------------------------------------

    def origins(self) -> list[OriginView]:
        states = self.node.store.read(origin_states)
        rows = self.node.store.read(
            lambda c: c.execute(
                "SELECT o.origin, o.coop, o.seq, o.hash, o.key, o.forked, o.embargo_whole, o.updated_at,"
                " (SELECT count(*) FROM fed_entries e WHERE e.origin = o.origin),"
                " (SELECT count(*) FROM mirror_records m WHERE m.origin = o.origin)"
                " FROM fed_origins o ORDER BY o.coop, o.origin"
            ).fetchall()
        )
        return [
            OriginView(
                origin=r[0],
                coop=r[1],
                seq=r[2],
                hash=r[3],
                key=r[4],
                forked=bool(r[5]),
                embargo_whole=bool(r[6]),
                updated_at=r[7],
                entries=r[8],
                mirrored=r[9],
                self=r[0] == self.self_id,
                embargo=states[r[0]].embargo if r[0] in states else Embargo(),
                quality_freeze=states[r[0]].quality_freeze if r[0] in states else False,
            )
            for r in rows
        ]

    def manifests(self, origin: str) -> list[dict[str, Any]]:
        rows = self.node.store.read(
            lambda c: c.execute(
                "SELECT seq, hash, in_chain, evidence, received_at FROM fed_manifests WHERE origin = ? ORDER BY seq, hash",
                (origin,),
            ).fetchall()
        )
        if not rows:
            raise NotFoundError(f"no manifests from {origin}", field="origin")
        return [
            {"seq": r[0], "hash": r[1], "in_chain": bool(r[2]), "evidence": bool(r[3]), "received_at": r[4]}
            for r in rows
        ]

    def envelope(self, origin: str, seq: int) -> bytes:
        rows = self.node.store.read(
            lambda c: c.execute(
                "SELECT envelope FROM fed_manifests WHERE origin = ? AND seq = ? ORDER BY in_chain DESC",
                (origin, seq),
            ).fetchall()
        )
        if not rows:
            raise NotFoundError(f"no manifest {seq} from {origin}", field="seq")
        return bytes(rows[0][0])

    def mirrored(
        self, origin: str, *, after: str = "", limit: int = 200, audience: Audience = Audience.FEDERATED
    ) -> list[dict[str, str]]:
        """The records of ``origin`` held here, as ``audience`` may see them listed (no content).

        The public sees what a federated release may carry; this co-op's admins see every row.
        """
        rows = self.node.store.read(
            lambda c: c.execute(
                "SELECT uid, hash, license, ai_use, eval, scope, record FROM mirror_records"
                " WHERE origin = ? AND uid > ? ORDER BY uid LIMIT ?",
                (origin, after, limit),
            ).fetchall()
        )
        keys = ("uid", "hash", "license", "ai_use", "eval", "scope")
        state = self.node.store.read(origin_states).get(origin, CollectiveState())
        out = []
        for r in rows:
            # Listed under the record's own terms (its bytes), and only where the row agrees.
            facts = mirror_facts(origin, (r[0], *r[2:6]), bytes(r[6]))
            if disclose(facts, state, audience) if facts is not None else audience is Audience.ADMIN:
                out.append(dict(zip(keys, r[:6], strict=True)))
        return out


def _refusal(decision: Decision) -> str:
    """Why this node's book did not accept a manifest, in a few words."""
    if isinstance(decision, Rejected):
        return f"{decision.reason}: {decision.detail}"
    if isinstance(decision, Equivocation):
        return f"sequence {decision.seq} already holds another manifest (a fork)"
    return f"{type(decision).__name__.lower()} of sequence {decision.seq}"


def _claimed_keyid(headers: Mapping[str, str]) -> str | None:
    """The key id a request's Signature-Input names (well-formed ids only), to say who was refused."""
    value = next((v for k, v in headers.items() if k.lower() == "signature-input"), "")
    match = _KEYID.search(value[:4096])
    return None if match is None else match.group(1)


class _Observed:
    """A round's transport as one peer sees it: notes the peer's clock (its ``Date``, or the
    offset its refusal measured) and why it refused, which the protocol reports as a status."""

    def __init__(self, transport: Transport, now: Callable[[], int]) -> None:
        self.transport = transport
        self.now = now
        self.skew: int | None = None  # this node's clock minus the peer's
        self.problem: str | None = None
        self.refused_for_time = False

    def send(self, request: Request, *, timeout: float, max_bytes: int) -> Response:
        sent = self.now()
        response = self.transport.send(request, timeout=timeout, max_bytes=max_bytes)
        received = self.now()
        headers = {k.lower(): v for k, v in response.headers.items()}
        try:
            peer_time = int(parsedate_to_datetime(headers.get("date", "")).timestamp())
            self.skew = (sent + received) // 2 - peer_time
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
        if response.status >= 400 and headers.get("content-type", "").startswith("application/problem+json"):
            self._read_problem(response.body)
        return response

    def _read_problem(self, body: bytes) -> None:
        try:
            problem = msgspec.json.decode(body[:8192])
        except msgspec.DecodeError:
            return
        if not isinstance(problem, dict):
            return
        detail = problem.get("detail")
        if isinstance(detail, str):
            # %r-style quoting keeps a peer's words from forging lines in our log or listing.
            self.problem = repr(detail[:200])[1:-1]
        offset = problem.get("clock_offset_seconds")
        if isinstance(offset, int) and not isinstance(offset, bool):
            # The peer measured our signature's clock minus its own: ours minus the peer's.
            self.skew = offset
            self.refused_for_time = True


class _StateOnly(msgspec.Struct):
    state: GovernanceState
    expires_at: int
    federation: tuple[str, ...] | None = None


def _fetch_rows(
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


def _pending(conn: sqlite3.Connection, state: CollectiveState) -> tuple[list[Entry], list[Tombstone]]:
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
            added.append(_entry(row))
    tombs = conn.execute(
        "SELECT t.uid, t.at FROM tombstones t JOIN contributions c ON c.uid = t.uid"
        " WHERE t.announced_seq IS NULL AND c.listed_seq IS NOT NULL"
    ).fetchall()
    return added, [Tombstone(uid=r[0], at=r[1]) for r in tombs]


def _mark_listed(conn: sqlite3.Connection, seq: int, uids: list[str], tombstones: list[str]) -> None:
    conn.executemany(
        "UPDATE contributions SET listed_seq = ? WHERE uid = ? AND listed_seq IS NULL",
        [(seq, u) for u in uids],
    )
    conn.executemany("UPDATE tombstones SET announced_seq = ? WHERE uid = ?", [(seq, u) for u in tombstones])


def _contact(conn: sqlite3.Connection, node_id: str, error: str | None, now: int) -> None:
    if error is None:
        conn.execute(
            "UPDATE peers SET last_contact = ?, last_error = NULL, contacts = contacts + 1 WHERE node_id = ?",
            (now, node_id),
        )
    else:
        conn.execute(
            "UPDATE peers SET last_error = ?, failures = failures + 1 WHERE node_id = ?",
            (error[:300], node_id),
        )
