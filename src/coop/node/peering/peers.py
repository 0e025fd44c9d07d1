"""The co-ops this node pinned (the ``peers`` table): pins, contacts, clock offsets, forks.

Pinning a peer is an admin's act (audited); the book accepts manifests only from
pinned origins (and this node), and only pinned keys may sign requests to it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import msgspec

from coop.federation import Book
from coop.governance import Signer
from coop.node.collective.audit import AuditAction, audit
from coop.node.errors import InputError, NotFoundError
from coop.node.peering.books import SqliteBookStore
from coop.node.peering.refusals import SKEW_SHOWN, Refusal, recent_refusals, skew_text
from coop.node.storage.store import Store

__all__ = ["PeerView", "Peers", "note_contact", "note_skew"]

_REFUSALS_SHOWN: Final = 5
log = logging.getLogger("coop.federation")


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


class Peers:
    """The pinned peers of one node, and the pins its book trusts."""

    def __init__(
        self,
        store: Store,
        book: Book,
        books: SqliteBookStore,
        *,
        self_id: str,
        clock: Callable[[], int],
        signer: Callable[[], Signer],
    ) -> None:
        self.store = store
        self.book = book
        self.books = books
        self.self_id = self_id
        self.clock = clock
        self.signer = signer

    def refresh_pins(self) -> None:
        """The book trusts the peers pinned now, the members of the roster in force (under their
        current keys; none while it is frozen) and this node; the roster is read again when its
        tables changed (the CLI may have changed it)."""
        rows = self.store.read(lambda c: c.execute("SELECT node_id FROM peers").fetchall())
        pins = {r[0]: r[0] for r in rows}
        roster = self.book.roster
        if roster is not None:
            roster.reload()
            pins.update(roster.members())
            current = roster.current
            if current is not None and roster.frozen():
                log.warning(
                    "federation roster %s version %d expired (frozen): trusting pinned peers only"
                    " until members sign an extension",
                    current.roster.federation,
                    current.roster.version,
                )
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
                signer=self.signer(),
                at=self.clock(),
                actor=actor,
                action=AuditAction.PEER_REMOVE,
                payload={"node_id": full, "url": url},
            )
            return str(full)

        removed = self.store.write(write)
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
        now = self.clock()

        def write(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM peers WHERE node_id = ? OR url = ?", (node_id, url)).fetchone():
                raise InputError("this peer (id or URL) is already pinned", field="--key")
            conn.execute(
                "INSERT INTO peers (url, node_id, name, added_at) VALUES (?, ?, ?, ?)",
                (url, node_id, name, now),
            )
            audit(
                conn,
                signer=self.signer(),
                at=now,
                actor=actor,
                action=AuditAction.PEER_ADD,
                payload={"node_id": node_id, "url": url},
            )

        self.store.write(write)
        self.refresh_pins()
        return next(p for p in self.peers() if p.node_id == node_id)

    def peers(self) -> list[PeerView]:
        rows = self.store.read(
            lambda c: c.execute(
                "SELECT p.node_id, p.url, p.name, p.added_at, p.last_contact, p.last_error, p.contacts, p.failures,"
                " o.seq, coalesce(o.forked, 0), p.clock_skew"
                " FROM peers p LEFT JOIN fed_origins o ON o.origin = p.node_id ORDER BY p.id"
            ).fetchall()
        )
        refused = {
            r[0]: tuple(self.store.read(partial(recent_refusals, node_id=r[0], limit=_REFUSALS_SHOWN)))
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
        for origin, key in self.book.pinned.items():
            if key == keyid and origin != self.self_id:
                return origin  # a roster member under the key it rotated to
        for origin, head in self.books.heads().items():
            if head.key == keyid and origin in self.book.pinned and origin != self.self_id:
                return origin
        return None

    def federation(self) -> tuple[str, ...]:
        """This co-op's federation (who federation scope reaches): the roster's members when one is
        in force, else the node ids of the peers it pinned."""
        members = {} if self.book.roster is None else self.book.roster.members()
        if members:
            return tuple(sorted(origin for origin in members if origin != self.self_id))
        return tuple(sorted(origin for origin in self.book.pinned if origin != self.self_id))

    def skewed_peers(self) -> list[dict[str, Any]]:
        """Peers whose clock was last measured :data:`SKEW_SHOWN` seconds or more from ours."""
        return [
            {"node_id": p.node_id, "clock_skew": p.clock_skew, "text": skew_text(p.clock_skew)}
            for p in self.peers()
            if p.clock_skew is not None and abs(p.clock_skew) >= SKEW_SHOWN
        ]


def note_contact(conn: sqlite3.Connection, node_id: str, error: str | None, now: int) -> None:
    """An exchange with a pinned peer ended: a contact, or a failure and why."""
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


def note_skew(conn: sqlite3.Connection, node_id: str, skew: int) -> None:
    """The peer's clock offset as last measured (this node's clock minus the peer's)."""
    conn.execute("UPDATE peers SET clock_skew = ? WHERE node_id = ?", (skew, node_id))
