"""This node's own manifests: building, signing and booking them, and rotating the key that signs.

A manifest is issued when something changed (records a cut admitted, tombstones,
the collective switches, the pinned federation, the gated buckets, what the joint actions
binding the co-op demand) or the last one nears expiry; it
goes through this node's own book like any peer's, so a refusal there is a bug, not
a manifest.  A key rotation is a manifest signed by the old and the new key.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

import msgspec

from coop.federation import GovernanceState, Head, build_manifest, seal_manifest
from coop.federation.gossip import Accepted, Decision, Equivocation, Rejected
from coop.federation.manifest import ManifestJoint
from coop.federation.roster import RosterRef
from coop.governance import CollectiveState, License, Signer
from coop.node.collective.audit import AuditAction, audit, audit_head
from coop.node.collective.settings import SettingsView
from coop.node.errors import BusyError, StateError
from coop.node.peering.books import DeclaredState, LockedBook, SqliteBookStore, declared_state
from coop.node.peering.listing import latest_release, mark_listed, pending
from coop.node.storage.datadir import DataDir
from coop.node.storage.store import Store

__all__ = ["IssueReport", "Issuer"]

log = logging.getLogger("coop.federation")

_DAY: Final = 86_400


class IssueReport(msgspec.Struct, frozen=True):
    seq: int
    hash: str
    added: int
    tombstones: int
    release: str | None


class Issuer:
    """Issues this node's manifests and rotates its signing key.

    ``federation`` names the pinned peers, ``own_state`` is this co-op's collective state as
    the policy reads it, and ``reload_identity`` makes the owner sign with the key a rotation
    (or a settled one) switched to.
    """

    def __init__(
        self,
        store: Store,
        data: DataDir,
        book: LockedBook,
        books: SqliteBookStore,
        *,
        lock: threading.RLock,
        self_id: str,
        coop: str,
        lifetime_days: int,
        clock: Callable[[], int],
        signer: Callable[[], Signer],
        settings: Callable[[], SettingsView],
        federation: Callable[[], tuple[str, ...]],
        own_state: Callable[[], CollectiveState],
        reload_identity: Callable[[], None],
    ) -> None:
        self.store = store
        self.data = data
        self.book = book
        self.books = books
        self._lock = lock
        self.self_id = self_id
        self.coop = coop
        self.lifetime = lifetime_days * _DAY
        self.clock = clock
        self.signer = signer
        self.settings = settings
        self.federation = federation
        self.own_state = own_state
        self.reload_identity = reload_identity
        self._fork_logged = False  # the own-fork halt is logged once per process, not every round
        # The roster in force, when there is one: manifests name it instead of listing the pins.
        self.roster_ref: Callable[[], RosterRef | None] = lambda: None
        # What the joint actions binding this co-op demand of its records' travel (None: nothing):
        # declared in its manifests, so a peer that cannot verify those actions honours them too.
        self.joint: Callable[[], ManifestJoint | None] = lambda: None

    def issue(self, *, release: str | None = None, force: bool = False) -> IssueReport | None:
        """Issue the next manifest if anything changed (records, tombstones, settings) or it nears expiry."""
        with self._lock, self.data.lock("manifest", purpose="issuing a manifest", wait=30):
            return self._issue(release=release, force=force)

    def own_fork(self) -> str | None:
        """Why this node issues no manifests, in one line, when its own chain was forked (another
        manifest signed with its key at a sequence it used); None when it is not."""
        head = self.books.heads().get(self.self_id)
        if head is None or not head.forked:
            return None
        seqs = sorted({seq for seq, _ in self.books.evidence().get(self.self_id, ())})
        at = f" at sequence {', '.join(map(str, seqs))}" if seqs else ""
        return (
            f"this node's own manifest chain was forked{at} (manifests signed with its key that it did"
            " not issue: a copy of its data directory or its key): it issues no manifests until the key"
            f" is rotated; stop every other copy, then run: coop identity rotate {self.data.root}"
        )

    def _next_own_seq(self, head: Head) -> int:
        """The sequence of this node's next manifest: after its head, and after every sequence a
        fork of its chain took (a rotation skips them; its peers hold them as evidence)."""
        if not head.forked:
            return head.seq + 1
        return max([head.seq, *(seq for seq, _ in self.books.evidence().get(self.self_id, ()))]) + 1

    def _issue(self, *, release: str | None, force: bool) -> IssueReport | None:
        now = self.clock()
        settings = self.settings()
        head = self.books.heads().get(self.self_id)
        halted = self.own_fork()
        if halted is not None:
            # Each attempt would be refused as one more fork of its own chain: none is made.
            if not self._fork_logged:
                log.error("%s", halted)
                self._fork_logged = True
            return None
        audit_entry = self.store.read(audit_head)
        state = GovernanceState(
            settings_digest=settings.digest,
            embargo=settings.settings.embargo,
            quality_freeze=settings.settings.quality_freeze,
            audit_seq=0 if audit_entry is None else audit_entry.seq,
            audit_head="0" * 64 if audit_entry is None else audit_entry.hash,
        )
        roster = self.roster_ref()
        federation = None if roster is not None else self.federation()
        # The buckets the co-op gates and whether its federation may mirror them: peers honour
        # them for the records already listed (their own pages and federated releases too).
        access = settings.settings.access
        gated = tuple(sorted({License(value) for value in access.gated}, key=lambda g: g.value))
        mirror_gated = bool(gated) and access.mirror_gated
        joint = self.joint() or None
        own = self.own_state()
        added, tombstones = self.store.read(lambda c: pending(c, own))
        previous = self._declared(head)
        stale = previous is None or previous.expires_at - now < self.lifetime // 4
        changed = (
            previous is None
            or previous.state.settings_digest != state.settings_digest
            or previous.state.embargo != state.embargo
            or previous.state.quality_freeze != state.quality_freeze
            or previous.federation != federation
            or previous.roster != roster
            or previous.gated != gated
            or previous.mirror_gated != mirror_gated
            or previous.joint != joint
        )
        if not (force or added or tombstones or changed or stale):
            return None
        complete = self.books.entries(self.self_id)
        for tomb in tombstones:
            complete.pop(tomb.uid, None)
        complete.update({e.uid: e for e in added})
        seq = 1 if head is None else head.seq + 1
        signer = self.signer()
        payload = build_manifest(
            origin=self.self_id,
            key=signer.public_key.hex(),
            coop=self.coop,
            seq=seq,
            prev="0" * 64 if head is None else head.hash,
            issued_at=now,
            lifetime=self.lifetime,
            release=release if release is not None else self.store.read(latest_release),
            added=added,
            complete=complete,
            tombstones=tombstones,
            state=state,
            federation=federation,
            roster=roster,
            gated=gated,
            mirror_gated=mirror_gated,
            joint=joint,
        )
        envelope = seal_manifest(payload, [signer])
        decision = self.book.receive([envelope], now=now)
        if not decision or decision[0].__class__.__name__ != "Accepted":
            raise RuntimeError(f"this node refused its own manifest: {decision}")
        uids, tombs = [e.uid for e in added], [t.uid for t in tombstones]
        self.store.write(lambda c: mark_listed(c, seq, uids, tombs))
        digest = self.books.heads()[self.self_id].hash
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
        with self._lock, self.data.lock("manifest", purpose="issuing a manifest", wait=30):
            now = self.clock()
            head = self.books.heads().get(self.self_id)
            if head is None:
                self._issue(release=None, force=True)
                head = self.books.heads()[self.self_id]
            old = self.signer()
            new = Signer(self.data.stage_key())
            try:
                previous = self._declared(head)
                assert previous is not None
                payload = build_manifest(
                    origin=self.self_id,
                    key=old.public_key.hex(),
                    coop=self.coop,
                    seq=self._next_own_seq(head),
                    prev=head.hash,
                    issued_at=now,
                    lifetime=self.lifetime,
                    release=self.store.read(latest_release),
                    added=[],
                    complete=self.books.entries(self.self_id),
                    tombstones=[],
                    state=previous.state,
                    rotate_to=new.public_key.hex(),
                    federation=None if self.roster_ref() is not None else self.federation(),
                    roster=self.roster_ref(),
                    gated=previous.gated,
                    mirror_gated=previous.mirror_gated,
                    joint=previous.joint,
                )
                decision = self.book.receive([seal_manifest(payload, [old, new])], now=now)
                if not decision or not isinstance(decision[0], Accepted):
                    why = _refusal(decision[0]) if decision else "no decision"
                    raise StateError(
                        f"this node refused its own rotation manifest ({why}); the key was not rotated"
                    )
            except BaseException:
                self.data.discard_staged_key()
                raise
            # Accepted and stored: from here the new key is the one peers expect (a crash
            # before the switch is finished by settle_rotation when the node next opens).
            self.data.commit_staged_key()
            self.reload_identity()
            signer = self.signer()
            self.store.write(
                lambda c: audit(
                    c,
                    signer=signer,
                    at=now,
                    actor=actor,
                    action=AuditAction.IDENTITY_ROTATE,
                    payload={"old_key": old.public_key.hex(), "new_key": new.public_key.hex()},
                )
            )
            accepted = self.books.heads()[self.self_id]
            self._fork_logged = False
            return IssueReport(seq=accepted.seq, hash=accepted.hash, added=0, tombstones=0, release=None)

    def settle_rotation(self) -> None:
        """Finish or roll back a rotation a crash cut short: switch to the staged key if this
        node's accepted chain announces it, else remove it (the old key stays active)."""
        try:
            # A rotation running in another process holds this lock: never settle under it.
            with self.data.lock("manifest", purpose="issuing a manifest", wait=30):
                self._settle_rotation()
        except BusyError as exc:
            log.warning("a key rotation is still running: %s", exc.message)

    def _settle_rotation(self) -> None:
        staged = self.data.staged_key()
        if staged is None:
            return
        head = self.books.heads().get(self.self_id)
        if head is not None and head.key == Signer(staged).public_key.hex():
            self.data.commit_staged_key()
            self.reload_identity()
            log.warning("finished a key rotation that was cut short: signing with the announced key")
        else:
            self.data.discard_staged_key()
            log.warning("removed the new key of a rotation that was never announced: the old key signs")

    def _declared(self, head: Head | None) -> DeclaredState | None:
        """What this node's latest manifest declared (None before its first)."""
        if head is None:
            return None
        (data,) = self.books.envelopes(self.self_id, [head.hash])
        return declared_state(data)


def _refusal(decision: Decision) -> str:
    """Why this node's book did not accept a manifest, in a few words."""
    if isinstance(decision, Rejected):
        return f"{decision.reason}: {decision.detail}"
    if isinstance(decision, Equivocation):
        return f"sequence {decision.seq} already holds another manifest (a fork)"
    return f"{type(decision).__name__.lower()} of sequence {decision.seq}"
