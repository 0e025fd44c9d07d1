"""This node's federation roster: the trusted versions and pending proposals in SQLite, and the
admin's operations on them (create, join, propose, sign, export), each audited.

The rules are :mod:`coop.federation.roster` (trust) and :mod:`coop.federation.roster_gossip`
(what to keep and offer); here they meet the database (migration 18) and this node's key.  The
roster's members are trusted like pins (their manifests and requests are accepted); the pins
stay whom this node talks to.
"""

from __future__ import annotations

import base64
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec

from coop.federation.errors import RosterError, RosterReason
from coop.federation.roster import (
    ROSTER_PAYLOAD_TYPE,
    Admit,
    Change,
    Extend,
    Member,
    Opened,
    Remove,
    RosterRef,
    Rotate,
    SetThreshold,
    Trusted,
    Update,
    add_signature,
    apply_chain,
    check_update,
    create_roster,
    next_version,
    open_roster,
    roster_bytes,
    sign_envelope,
    trust_root,
)
from coop.federation.roster_gossip import RosterBook
from coop.governance import Signer
from coop.governance.envelope import Envelope, EnvelopeSignature
from coop.node.collective.audit import AuditAction, audit
from coop.node.errors import InputError, NotFoundError, StateError
from coop.node.storage.store import Store

__all__ = ["DEFAULT_LIFETIME_DAYS", "RosterKeeper", "SqliteRosterStore"]

DEFAULT_LIFETIME_DAYS: Final = 365
_ENC: Final = msgspec.json.Encoder(order="sorted")


class SqliteRosterStore:
    """A :class:`~coop.federation.roster_gossip.RosterStore` in the node's database; a version
    trusted here is audited in the same transaction (whether an admin or gossip brought it)."""

    def __init__(self, store: Store, *, clock: Callable[[], int], signer: Callable[[], Signer]) -> None:
        self.store = store
        self.clock = clock
        self.signer = signer
        self.actor = "gossip"

    def marker(self) -> object:
        """Row counts and the largest row ids of the roster tables: they change with any write."""
        return self.store.read(
            lambda c: c.execute(
                "SELECT (SELECT count(*) || ':' || coalesce(max(rowid), 0) FROM roster_versions),"
                " (SELECT count(*) || ':' || coalesce(max(rowid), 0) FROM roster_proposals),"
                " (SELECT count(*) || ':' || coalesce(max(rowid), 0) FROM roster_signatures),"
                " (SELECT count(*) FROM roster_evidence)"
            ).fetchone()
        )

    def versions(self) -> list[bytes]:
        rows = self.store.read(
            lambda c: c.execute("SELECT envelope FROM roster_versions ORDER BY version").fetchall()
        )
        return [bytes(r[0]) for r in rows]

    def newest(self) -> bytes | None:
        row = self.store.read(
            lambda c: c.execute(
                "SELECT envelope FROM roster_versions ORDER BY version DESC LIMIT 1"
            ).fetchone()
        )
        return None if row is None else bytes(row[0])

    def versions_after(self, version: int, limit: int) -> list[tuple[str, bytes]]:
        rows = self.store.read(
            lambda c: c.execute(
                "SELECT hash, envelope FROM roster_versions WHERE version > ? ORDER BY version LIMIT ?",
                (version, limit),
            ).fetchall()
        )
        return [(str(r[0]), bytes(r[1])) for r in rows]

    def version(self, version: int) -> bytes | None:
        row = self.store.read(
            lambda c: c.execute(
                "SELECT envelope FROM roster_versions WHERE version = ?", (version,)
            ).fetchone()
        )
        return None if row is None else bytes(row[0])

    def add_versions(self, items: Sequence[Trusted]) -> None:
        now, actor = self.clock(), self.actor

        def write(conn: sqlite3.Connection) -> None:
            for item in items:
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO roster_versions (federation, version, hash, envelope, added_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (item.roster.federation, item.roster.version, item.hash, item.envelope, now),
                )
                if cursor.rowcount:
                    audit(
                        conn,
                        signer=self.signer(),
                        at=now,
                        actor=actor,
                        action=AuditAction.ROSTER_ADOPT,
                        payload={
                            "federation": item.roster.federation,
                            "version": item.roster.version,
                            "hash": item.hash,
                            "members": len(item.roster.members),
                            "threshold": item.roster.threshold,
                        },
                    )

        self.store.write(write)

    def proposals(self) -> list[tuple[str, bytes, int]]:
        def read(conn: sqlite3.Connection) -> list[tuple[str, bytes, int]]:
            rows = conn.execute(
                "SELECT id, payload, added_at FROM roster_proposals ORDER BY added_at, rowid"
            ).fetchall()
            return [(pid, _assemble(conn, pid, bytes(payload)), added) for pid, payload, added in rows]

        return self.store.read(read)

    def merge_proposal(self, proposal_id: str, version: int, data: bytes, *, now: int = 0) -> bytes:
        opened = open_roster(data)
        now = now or self.clock()

        def write(conn: sqlite3.Connection) -> bytes:
            conn.execute(
                "INSERT OR IGNORE INTO roster_proposals (id, federation, version, payload, added_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (proposal_id, opened.roster.federation, version, opened.payload, now),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO roster_signatures (proposal, keyid, sig) VALUES (?, ?, ?)",
                [(proposal_id, s.keyid, s.sig) for s in opened.envelope.signatures],
            )
            return _assemble(conn, proposal_id, opened.payload)

        return self.store.write(write)

    def drop_proposals(self, upto_version: int) -> None:
        def write(conn: sqlite3.Connection) -> None:
            stale = "SELECT id FROM roster_proposals WHERE version <= ?"
            conn.execute(f"DELETE FROM roster_signatures WHERE proposal IN ({stale})", (upto_version,))
            conn.execute("DELETE FROM roster_proposals WHERE version <= ?", (upto_version,))

        self.store.write(write)

    def drop_proposal(self, proposal_id: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM roster_signatures WHERE proposal = ?", (proposal_id,))
            conn.execute("DELETE FROM roster_proposals WHERE id = ?", (proposal_id,))

        self.store.write(write)

    def evidence(self) -> list[bytes]:
        rows = self.store.read(
            lambda c: c.execute("SELECT envelope FROM roster_evidence ORDER BY added_at, hash").fetchall()
        )
        return [bytes(r[0]) for r in rows]

    def add_evidence(self, item: Opened) -> None:
        row = (item.hash, item.roster.federation, item.roster.version, item.data, self.clock())
        self.store.write(
            lambda c: c.execute(
                "INSERT OR IGNORE INTO roster_evidence (hash, federation, version, envelope, added_at)"
                " VALUES (?, ?, ?, ?, ?)",
                row,
            )
        )


def _assemble(conn: sqlite3.Connection, proposal_id: str, payload: bytes) -> bytes:
    """A proposal's envelope: its payload and every signature gathered (sorted by key id)."""
    sigs = conn.execute(
        "SELECT keyid, sig FROM roster_signatures WHERE proposal = ? ORDER BY keyid", (proposal_id,)
    ).fetchall()
    envelope = Envelope(
        payload_type=ROSTER_PAYLOAD_TYPE,
        payload=base64.b64encode(payload).decode(),
        signatures=tuple(EnvelopeSignature(keyid=k, sig=s) for k, s in sigs),
    )
    return _ENC.encode(envelope)


class RosterKeeper:
    """The admin's roster operations on one node (the CLI's ``coop federation``)."""

    def __init__(
        self,
        store: Store,
        book: RosterBook,
        rosters: SqliteRosterStore,
        *,
        self_id: str,
        coop: str,
        public_url: str,
        clock: Callable[[], int],
        signer: Callable[[], Signer],
    ) -> None:
        self.store = store
        self.book = book
        self.rosters = rosters
        self.self_id = self_id
        self.coop = coop
        self.public_url = public_url
        self.clock = clock
        self.signer = signer
        # The book applies a freeze (and drops expired proposals) on this node's clock.
        book.clock = clock

    # -- reading ---------------------------------------------------------------------------

    def ref(self) -> RosterRef | None:
        """What this node's manifests name as their federation scope (None: no roster, or it is
        frozen: manifests then list the pinned peers)."""
        current = self.book.current
        if current is None or self.book.frozen():
            return None
        return RosterRef(federation=current.roster.federation, version=current.roster.version)

    def view(self) -> dict[str, Any]:
        """The roster in force and the pending proposals, for ``show``, the API and the web page."""
        self.book.reload()
        current = self.book.current
        if current is None:
            return {"roster": None, "proposals": [], "warnings": []}
        roster = current.roster
        proposals = []
        for pid, opened in sorted(self.book.proposals().items()):
            verdict = check_update(current, opened)
            proposals.append(
                {
                    "id": pid,
                    "version": opened.roster.version,
                    "changes": _changes(roster.ids(), opened),
                    "signed_by": sorted({s.keyid for s in opened.envelope.signatures}),
                    "needs": verdict.detail or "ready",
                    "expires_at": self.book.proposal_expiry(pid),
                    "old_missing": verdict.old_missing,
                    "new_missing": verdict.new_missing,
                    "unproven": list(verdict.unproven),
                }
            )
        forks = self.book.forks()
        is_frozen = self.book.frozen()
        warnings = []
        if is_frozen:
            warnings.append(
                "frozen: the roster expired; only pinned peers are trusted until members sign an extension"
            )
        if forks:
            warnings.append(
                "forked: k members signed two different versions of one number (evidence kept): "
                + ", ".join(f"v{v} {h[:16]}" for h, v in sorted(forks.items(), key=lambda kv: (kv[1], kv[0])))
            )
        return {
            "warnings": warnings,
            "roster": {
                "federation": roster.federation,
                "name": roster.name,
                "version": roster.version,
                "hash": current.hash,
                "threshold": roster.threshold,
                "expires_at": roster.expires_at,
                "frozen": is_frozen,
                "forked": bool(forks),
                "forks": [{"hash": h, "version": v} for h, v in sorted(forks.items())],
                "members": [msgspec.structs.asdict(m) for m in roster.members],
                "self_member": self.self_id in roster.ids(),
            },
            "proposals": proposals,
        }

    def export(self) -> bytes:
        current = self.book.current
        if current is None:
            raise NotFoundError("this node has no roster: coop federation create or join first")
        return current.envelope

    def export_proposal(self, proposal_id: str) -> bytes:
        return self._proposal(proposal_id).data

    # -- changing --------------------------------------------------------------------------

    def create(
        self, name: str, *, threshold: int = 1, lifetime_days: int = DEFAULT_LIFETIME_DAYS, actor: str
    ) -> Trusted:
        """Found a federation: version 1 lists this co-op alone, signed by it."""
        if self.book.current is not None:
            raise StateError("this node already has a roster (coop federation show)")
        now = self.clock()
        founder = Member(
            id=self.self_id, key=self.signer().public_key.hex(), name=self.coop, url=self.public_url
        )
        try:
            trusted = create_roster(
                federation=secrets.token_hex(16),
                name=name,
                founder=founder,
                threshold=threshold,
                expires_at=now + lifetime_days * 86_400,
                signer=self.signer(),
            )
        except RosterError as exc:
            field = "--name" if "name" in exc.message else "--threshold"
            raise InputError(exc.message, field=field) from None
        self._audit(AuditAction.ROSTER_CREATE, actor, {"federation": trusted.roster.federation, "name": name})
        self._trust([trusted], actor)
        return trusted

    def join(self, data: bytes, *, actor: str) -> Trusted:
        """Trust a roster version obtained out of band: the first one on first use (signed by ``k`` of
        its own members), a later one of the same federation by the chain from the trusted one."""
        now = self.clock()
        current = self.book.current
        try:
            if current is None:
                trusted, _frozen = trust_root(data, now=now)
                self._audit(
                    AuditAction.ROSTER_JOIN,
                    actor,
                    {"federation": trusted.roster.federation, "version": trusted.roster.version},
                )
                self._trust([trusted], actor)
                return trusted
            if current.hash == open_roster(data).hash:
                return current
            newest, applied, refused, _frozen = apply_chain(current, [data], now=now)
        except RosterError as exc:
            raise InputError(f"roster refused: {exc.message}", field="ROSTER_FILE") from None
        if not applied:
            why = refused[0].message if refused else "nothing new"
            raise InputError(f"roster refused: {why}", field="ROSTER_FILE")
        self._trust(applied, actor)
        return newest

    def propose(self, changes: Sequence[Change], *, extend_days: int | None = None, actor: str) -> str:
        """The next version with ``changes``, signed by this node: a pending proposal (its id).

        It becomes the next version once ``k`` current members and every added key signed.
        """
        current = self._current()
        expires_at = None if extend_days is None else self.clock() + extend_days * 86_400
        try:
            candidate = next_version(current, changes, expires_at=expires_at)
        except RosterError as exc:
            raise InputError(exc.message) from None
        data = sign_envelope(roster_bytes(candidate), [self.signer()])
        opened = open_roster(data)
        self._audit(
            AuditAction.ROSTER_PROPOSE,
            actor,
            {
                "proposal": opened.hash,
                "version": candidate.version,
                "changes": _changes(current.roster.ids(), opened),
            },
        )
        self._offer(data, actor)
        return opened.hash

    def sign(self, proposal: str | bytes, *, actor: str) -> dict[str, Any]:
        """Sign a pending proposal (its id, or its envelope from a file: imported first)."""
        if isinstance(proposal, bytes):
            try:
                opened = open_roster(proposal)
            except RosterError as exc:
                raise InputError(f"not a roster proposal: {exc.message}", field="PROPOSAL") from None
            self._current()
            adopted = self.book.version(opened.roster.version)
            adopted = adopted if adopted is not None and adopted.hash == opened.hash else None
            if adopted is not None:
                return {
                    "proposal": opened.hash,
                    "adopted": True,
                    "version": adopted.roster.version,
                    "needs": "",
                }
            self._offer(proposal, actor)
            proposal_id, data = opened.hash, proposal
            known = self.book.proposals().get(proposal_id)
            if known is None:
                # Adopted already (the signatures imported were enough), or not kept.
                current = self._current()
                if current.hash != proposal_id:
                    raise StateError(f"proposal {proposal_id[:16]} was not kept")
                return {
                    "proposal": proposal_id,
                    "adopted": True,
                    "version": current.roster.version,
                    "needs": "",
                }
            data = known.data
        else:
            proposal_id = proposal
            data = self._proposal(proposal_id).data
        signed = add_signature(data, self.signer())
        self._audit(AuditAction.ROSTER_SIGN, actor, {"proposal": proposal_id})
        self._offer(signed, actor)
        current = self._current()
        done = current.hash == proposal_id
        return {
            "proposal": proposal_id,
            "adopted": done,
            "version": current.roster.version,
            "needs": ""
            if done
            else check_update(current, open_roster(self.export_proposal(proposal_id))).detail,
        }

    def withdraw(self, proposal: str, *, actor: str) -> str:
        """Drop a pending proposal here (its id or a prefix of 8+ digits); returns its id.  Peers
        are told not to send it again; it lives on where others keep it, until it expires."""
        proposal_id = self._proposal(proposal).hash
        self.book.withdraw(proposal_id)
        self._audit(AuditAction.ROSTER_PROPOSE, actor, {"proposal": proposal_id, "withdrawn": True})
        return proposal_id

    # -- helpers ---------------------------------------------------------------------------

    def _current(self) -> Trusted:
        self.book.reload()
        current = self.book.current
        if current is None:
            raise NotFoundError("this node has no roster: coop federation create or join first")
        return current

    def _proposal(self, proposal_id: str) -> Opened:
        self.book.reload()
        matches = [o for pid, o in self.book.proposals().items() if pid.startswith(proposal_id.lower())]
        if len(proposal_id) < 8 or len(matches) != 1:
            raise NotFoundError(f"no pending proposal {proposal_id} (coop federation show)", field="PROPOSAL")
        return matches[0]

    def _offer(self, data: bytes, actor: str) -> None:
        self.rosters.actor = actor
        try:
            self._current()
            self.book.offer(data)
        except RosterError as exc:
            if exc.reason is not RosterReason.UNDER_SIGNED_OLD:
                raise InputError(f"proposal refused: {exc.message}", field="PROPOSAL") from None
            raise StateError(f"proposal refused: {exc.message}") from None
        finally:
            self.rosters.actor = "gossip"

    def _trust(self, items: Sequence[Trusted], actor: str) -> None:
        self.rosters.actor = actor
        try:
            self.book.trust(items)
        finally:
            self.rosters.actor = "gossip"

    def _audit(self, action: AuditAction, actor: str, payload: dict[str, Any]) -> None:
        now, signer = self.clock(), self.signer()
        self.store.write(
            lambda c: audit(c, signer=signer, at=now, actor=actor, action=action, payload=payload)
        )


def _changes(before: dict[str, str], opened: Opened) -> list[str]:
    """A proposal's changes, in words (member ids shortened)."""
    after = opened.roster.ids()
    out = [f"admit {i[:16]}" for i in sorted(set(after) - set(before))]
    out += [f"remove {i[:16]}" for i in sorted(set(before) - set(after))]
    out += [f"rotate {i[:16]}" for i in sorted(set(after) & set(before)) if after[i] != before[i]]
    return out


def parse_changes(
    *,
    admit: Sequence[tuple[str, str, str]] = (),
    remove: Sequence[str] = (),
    rotate: Sequence[tuple[str, str]] = (),
    threshold: int | None = None,
    update: Sequence[tuple[str, str | None, str | None]] = (),
    extend_to: int | None = None,
) -> list[Change]:
    """The changes of a proposal from the CLI's options (ids lowercased)."""
    changes: list[Change] = [
        Admit(Member(id=i.strip().lower(), key=i.strip().lower(), name=n, url=u.rstrip("/")))
        for i, u, n in admit
    ]
    changes += [Remove(i.strip().lower()) for i in remove]
    changes += [Rotate(i.strip().lower(), k.strip().lower()) for i, k in rotate]
    changes += [Update(i.strip().lower(), n, u) for i, n, u in update]
    if threshold is not None:
        changes.append(SetThreshold(threshold))
    if extend_to is not None:
        changes.append(Extend(extend_to))
    return changes
