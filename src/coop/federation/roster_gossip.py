"""What a node knows of its federation's roster, and the gossip of roster versions and proposals.

:class:`RosterBook` keeps the chain of trusted versions and the pending proposals through a
:class:`RosterStore` (memory here, SQLite in the node) and decides, purely, what to accept
from a peer and what to offer it.  The protocol's ``roster`` step carries a
:class:`RosterMessage`: the sender's :class:`RosterDigest` (federation, version, and per
proposal a tag of the keys that signed it) and the items the receiver lacks by the digest it
sent -- versions after its version (in order, bounded), proposals whose signatures differ.
Signatures of one proposal merge; a proposal that then verifies becomes the next version.

Longer than ~500 lines on purpose: the hostile-peer rules (per-key proposal quota, expiry,
refusals advertised back, equivocation evidence) sit next to the book they guard.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Final, Protocol

import msgspec

from coop.federation.errors import RosterError, RosterReason
from coop.federation.roster import (
    Opened,
    Trusted,
    Verdict,
    apply_chain,
    check_update,
    frozen,
    merge_signatures,
    open_roster,
    signers_of,
)
from coop.governance import sha256_hex

__all__ = [
    "MAX_EVIDENCE",
    "MAX_PROPOSALS",
    "MAX_PROPOSALS_PER_KEY",
    "MAX_ROSTER_ITEMS",
    "PROPOSAL_LIFETIME",
    "MemoryRosterStore",
    "RosterBook",
    "RosterDigest",
    "RosterMessage",
    "RosterReceipt",
    "RosterStore",
]

log = logging.getLogger("coop.federation")

MAX_ROSTER_ITEMS: Final = 16  # versions, and proposals, in one message
MAX_PROPOSALS: Final = 64  # pending proposals kept in all (the oldest evicted)
MAX_PROPOSALS_PER_KEY: Final = 2  # pending proposals one member's key takes part in (the newest kept)
PROPOSAL_LIFETIME: Final = 30 * 86_400  # a proposal is dropped after this (or its roster's expiry)
MAX_EVIDENCE: Final = 8  # envelopes kept as evidence of an equivocation (two versions, one number)
MAX_REFUSED: Final = 128  # ids of versions/proposals refused or dropped, advertised in the digest
_MAX_MESSAGE_ITEMS_BYTES: Final = 3 * 1024 * 1024
_ENC: Final = msgspec.json.Encoder(order="sorted")


class RosterDigest(msgspec.Struct, frozen=True):
    federation: str = ""
    version: int = 0
    proposals: dict[str, str] = msgspec.field(default_factory=dict)  # id -> tag of its signers
    hash: str = ""  # the trusted version's hash (two nodes on one number may hold different ones)
    refused: list[str] = msgspec.field(default_factory=list)  # hashes not to send again
    forks: list[str] = msgspec.field(default_factory=list)  # hashes of equivocating versions known


class RosterMessage(msgspec.Struct, frozen=True):
    digest: RosterDigest = msgspec.field(default_factory=RosterDigest)
    versions: list[msgspec.Raw] = msgspec.field(default_factory=list)
    proposals: list[msgspec.Raw] = msgspec.field(default_factory=list)


class RosterReceipt(msgspec.Struct, frozen=True):
    applied: int = 0
    merged: int = 0
    refused: tuple[str, ...] = ()
    forks: tuple[str, ...] = ()  # hashes of equivocating versions newly kept as evidence


class RosterStore(Protocol):
    """Where the trusted versions, pending proposals and equivocation evidence live."""

    def marker(self) -> object:
        """Something cheap that changes whenever the store does (another process may write)."""

    def versions(self) -> list[bytes]:
        """Trusted versions' envelopes, oldest first."""

    def newest(self) -> bytes | None:
        """The newest trusted version's envelope."""

    def versions_after(self, version: int, limit: int) -> list[tuple[str, bytes]]:
        """(hash, envelope) of the trusted versions after ``version``, oldest first."""

    def version(self, version: int) -> bytes | None: ...

    def add_versions(self, items: Sequence[Trusted]) -> None: ...

    def proposals(self) -> list[tuple[str, bytes, int]]:
        """(id, envelope, added at) of each pending proposal, oldest first."""

    def merge_proposal(self, proposal_id: str, version: int, data: bytes, *, now: int = 0) -> bytes:
        """Keep a proposal, its signatures merged with a stored copy's; returns what is stored."""

    def drop_proposal(self, proposal_id: str) -> None: ...

    def drop_proposals(self, upto_version: int) -> None: ...

    def evidence(self) -> list[bytes]: ...

    def add_evidence(self, item: Opened) -> None: ...


class MemoryRosterStore:
    def __init__(self) -> None:
        self._versions: list[tuple[int, str, bytes]] = []
        self._proposals: dict[str, tuple[int, bytes, int]] = {}
        self._evidence: list[bytes] = []
        self._changes = 0

    def marker(self) -> object:
        return self._changes

    def versions(self) -> list[bytes]:
        return [data for _, _, data in self._versions]

    def newest(self) -> bytes | None:
        return self._versions[-1][2] if self._versions else None

    def versions_after(self, version: int, limit: int) -> list[tuple[str, bytes]]:
        return [(h, data) for v, h, data in self._versions if v > version][:limit]

    def version(self, version: int) -> bytes | None:
        return next((data for v, _, data in self._versions if v == version), None)

    def add_versions(self, items: Sequence[Trusted]) -> None:
        known = {v for v, _, _ in self._versions}
        self._versions += [
            (t.roster.version, t.hash, t.envelope) for t in items if t.roster.version not in known
        ]
        self._changes += 1

    def proposals(self) -> list[tuple[str, bytes, int]]:
        return [(pid, data, at) for pid, (_, data, at) in self._proposals.items()]

    def merge_proposal(self, proposal_id: str, version: int, data: bytes, *, now: int = 0) -> bytes:
        old = self._proposals.get(proposal_id)
        merged = data if old is None else merge_signatures(old[1], data)
        self._proposals[proposal_id] = (version, merged, now if old is None else old[2])
        self._changes += 1
        return merged

    def drop_proposal(self, proposal_id: str) -> None:
        self._proposals.pop(proposal_id, None)
        self._changes += 1

    def drop_proposals(self, upto_version: int) -> None:
        self._proposals = {k: v for k, v in self._proposals.items() if v[0] > upto_version}
        self._changes += 1

    def evidence(self) -> list[bytes]:
        return list(self._evidence)

    def add_evidence(self, item: Opened) -> None:
        self._evidence.append(item.data)
        self._changes += 1


def signer_tag(opened: Opened) -> str:
    """A short tag of the key ids that signed a proposal (equal tags: nothing to merge)."""
    return sha256_hex(",".join(sorted({s.keyid for s in opened.envelope.signatures})).encode())[:16]


class RosterBook:
    """The newest trusted roster version and the pending proposals of one node (thread-safe).

    Only the newest trusted version is held in memory; older ones are read from the store when a
    peer lacks them.  The store is read again only when it changed (:meth:`RosterStore.marker`).
    ``clock`` (seconds) lets the book apply a freeze: while the newest trusted version has
    expired, its members are not trusted (:meth:`members`, :meth:`scopes` are empty) and expired
    proposals are dropped.  Without one, the roster never freezes here (pure tests).
    """

    def __init__(self, store: RosterStore, *, now: int = 0, clock: Callable[[], int] | None = None) -> None:
        self.store = store
        self.clock = clock
        self._lock = threading.RLock()
        self._current: Trusted | None = None
        self._proposals: dict[str, Opened] = {}  # oldest first
        self._added: dict[str, int] = {}
        self._old_signers: dict[str, frozenset[str]] = {}  # id -> trusted members' keys that signed
        self._evidence: dict[str, Opened] = {}
        self._refused: dict[str, None] = {}  # hashes refused or dropped here (newest last, bounded)
        self._marker: object = object()
        self._tag = ""
        self.reload()

    # -- reading ---------------------------------------------------------------------------

    def reload(self, *, force: bool = False) -> None:
        """Read the store again when it changed (another process -- the CLI -- may have written)."""
        with self._lock:
            marker = self.store.marker()
            if not force and marker == self._marker:
                return
            newest = self.store.newest()
            current = None
            if newest is not None:
                opened = open_roster(newest)
                current = Trusted(roster=opened.roster, hash=opened.hash, envelope=newest)
            if current is None or self._current is None or current.hash != self._current.hash:
                self._refused.clear()
            self._current = current
            self._proposals, self._added, self._old_signers = {}, {}, {}
            for pid, data, added in self.store.proposals():
                try:
                    opened = open_roster(data)
                except RosterError:
                    continue
                self._proposals[pid] = opened
                self._added[pid] = added
                keys = {} if current is None else current.roster.keys()
                self._old_signers[pid] = frozenset(signers_of(opened, keys))
            self._evidence = {}
            for data in self.store.evidence()[:MAX_EVIDENCE]:
                try:
                    opened = open_roster(data)
                except RosterError:
                    continue
                self._evidence[opened.hash] = opened
            self._marker = marker
            self._retag()

    @property
    def current(self) -> Trusted | None:
        with self._lock:
            return self._current

    def version(self, version: int) -> Trusted | None:
        """A trusted version by its number (read from the store)."""
        data = self.store.version(version)
        if data is None:
            return None
        opened = open_roster(data)
        return Trusted(roster=opened.roster, hash=opened.hash, envelope=data)

    def chain(self) -> list[Trusted]:
        """Every trusted version, oldest first (read from the store: for tools and tests)."""
        out = []
        for data in self.store.versions():
            opened = open_roster(data)
            out.append(Trusted(roster=opened.roster, hash=opened.hash, envelope=data))
        return out

    def proposals(self) -> dict[str, Opened]:
        with self._lock:
            return dict(self._proposals)

    def tag(self) -> str:
        """Changes whenever the trusted version, a proposal's signatures or the evidence change."""
        return self._tag

    def frozen(self, now: int | None = None) -> bool:
        """Whether the newest trusted version has expired (at ``now``, or the clock's time)."""
        when = self._now(now)
        current = self.current
        return current is not None and when is not None and frozen(current.roster, now=when)

    def proposal_expiry(self, proposal_id: str) -> int | None:
        """When a pending proposal is dropped (its roster's expiry, or 30 days after it came)."""
        with self._lock:
            opened = self._proposals.get(proposal_id)
            return None if opened is None else self._expires(opened, self._added.get(proposal_id, 0))

    def forks(self) -> dict[str, int]:
        """Hash -> version of each equivocating version known (ours included when it is one)."""
        with self._lock:
            out = {h: o.roster.version for h, o in self._evidence.items()}
            current = self._current
            if current is not None and any(v == current.roster.version for v in out.values()):
                out[current.hash] = current.roster.version
            return out

    def members(self) -> dict[str, str]:
        """Member node id -> current key ({} without a roster in force, or while it is frozen)."""
        current = self.current
        return {} if current is None or self.frozen() else current.roster.ids()

    def scopes(self) -> dict[str, frozenset[str]]:
        """Federation id -> its member ids: who a manifest naming that roster reaches."""
        current = self.current
        if current is None or self.frozen():
            return {}
        return {current.roster.federation: frozenset(current.roster.ids())}

    def digest(self) -> RosterDigest:
        with self._lock:
            current = self._current
            if current is None:
                return RosterDigest()
            return RosterDigest(
                federation=current.roster.federation,
                version=current.roster.version,
                proposals={pid: signer_tag(o) for pid, o in self._proposals.items()},
                hash=current.hash,
                refused=list(self._refused),
                forks=sorted(self.forks()),
            )

    def items_for(self, theirs: RosterDigest) -> tuple[list[bytes], list[bytes]]:
        """Versions and proposals a peer with this digest lacks (only within one federation);
        nothing it refused, already holds, or already knows as evidence of a fork."""
        with self._lock:
            current = self._current
            if current is None or theirs.federation != current.roster.federation:
                return [], []
            skip = set(theirs.refused) | set(theirs.forks)
            budget = _MAX_MESSAGE_ITEMS_BYTES
            versions: list[bytes] = []
            if theirs.version < current.roster.version:
                for version_hash, data in self.store.versions_after(theirs.version, MAX_ROSTER_ITEMS):
                    if version_hash in skip:
                        break  # it refused this link: the rest would not follow either
                    if len(data) > budget:
                        break
                    budget -= len(data)
                    versions.append(data)
            elif (
                theirs.version == current.roster.version
                and theirs.hash not in ("", current.hash)
                and current.hash not in skip
                and len(current.envelope) <= budget
            ):
                # Same number, other version: an equivocation; show it ours (the evidence below).
                budget -= len(current.envelope)
                versions.append(current.envelope)
            if self._evidence:
                for opened in self._evidence.values():
                    if opened.hash in skip or opened.hash == theirs.hash or len(opened.data) > budget:
                        continue
                    budget -= len(opened.data)
                    versions.append(opened.data)
            proposals: list[bytes] = []
            for pid, opened in sorted(self._proposals.items()):
                if pid in skip or theirs.proposals.get(pid) == signer_tag(opened):
                    continue
                if len(proposals) >= MAX_ROSTER_ITEMS or len(opened.data) > budget:
                    break
                budget -= len(opened.data)
                proposals.append(opened.data)
            return versions[:MAX_ROSTER_ITEMS], proposals

    # -- changing --------------------------------------------------------------------------

    def trust(self, items: Sequence[Trusted]) -> None:
        """Store versions already verified (the root trusted on first use, or a chain)."""
        with self._lock:
            self.store.add_versions(items)
            if items:
                self.store.drop_proposals(items[-1].roster.version)
            self.reload(force=True)

    def receive(self, versions: Iterable[bytes], proposals: Iterable[bytes], *, now: int) -> RosterReceipt:
        """Apply a peer's versions (in order) and merge its proposals; promote a proposal that
        verifies.  A valid version with the number of one trusted here but another hash is an
        equivocation: kept as evidence (bounded) and logged, never applied."""
        with self._lock:
            self.reload()
            current = self._current
            if current is None:
                return RosterReceipt(refused=(RosterReason.NO_ROSTER.value,))
            self._prune(now)
            refused: list[str] = []
            forks: list[str] = []
            later: list[Opened] = []
            for data in list(versions)[:MAX_ROSTER_ITEMS]:
                try:
                    opened = open_roster(data)
                except RosterError as exc:
                    refused.append(exc.reason.value)
                    continue
                if opened.roster.version > current.roster.version:
                    later.append(opened)
                elif self._equivocation(opened):
                    forks.append(opened.hash)
            _newest, applied, errors, _frozen = apply_chain(current, [o.data for o in later], now=now)
            refused += [e.reason.value for e in errors if e.reason is not RosterReason.ROLLBACK]
            if applied:
                self.trust(applied)
            adopted = {t.hash for t in applied}
            for opened in later:
                if opened.hash not in adopted and opened.roster.version > self._version():
                    self._note_refused(opened.hash)
            merged = 0
            for data in list(proposals)[:MAX_ROSTER_ITEMS]:
                try:
                    merged += self.offer(data, now=now)
                except RosterError as exc:
                    refused.append(exc.reason.value)
            return RosterReceipt(
                applied=len(applied), merged=merged, refused=tuple(refused), forks=tuple(forks)
            )

    def offer(self, data: bytes, *, now: int | None = None) -> int:
        """Adopt a proposal that verifies (whatever is pending), else keep it (merging signatures);
        1 if it was kept or adopted.

        A proposal kept must follow the trusted version and carry a valid signature of one of its
        members (a stranger cannot fill the table); signatures of keys neither version lists are
        dropped.  Each member's key takes part in at most :data:`MAX_PROPOSALS_PER_KEY` pending
        proposals: a new one it alone signed evicts its oldest one it alone signed; at most
        :data:`MAX_PROPOSALS` are kept (the oldest evicted).
        """
        with self._lock:
            self.reload()
            current = self._current
            if current is None:
                raise RosterError(RosterReason.NO_ROSTER, "this node trusts no roster yet")
            opened = open_roster(data)
            try:
                verdict = check_update(current, opened)
                if verdict.reason in (
                    RosterReason.ROLLBACK,
                    RosterReason.GAP,
                    RosterReason.BROKEN_CHAIN,
                    RosterReason.WRONG_FEDERATION,
                ):
                    raise RosterError(verdict.reason, verdict.detail)
                if not verdict:
                    stored = self._proposals.get(opened.hash)
                    if stored is not None:
                        merged = open_roster(merge_signatures(stored.data, data))
                        if check_update(current, merged):
                            opened, verdict = merged, Verdict(None)
                if verdict:
                    self.trust([Trusted(roster=opened.roster, hash=opened.hash, envelope=opened.data)])
                    return 1
                return self._keep(current, opened, self._now(now) or 0)
            except RosterError:
                self._note_refused(opened.hash)
                raise

    def withdraw(self, proposal_id: str) -> None:
        """Drop a pending proposal here (its id in full); peers are told not to send it again."""
        with self._lock:
            self.store.drop_proposal(proposal_id)
            self._note_refused(proposal_id)
            self.reload(force=True)

    # -- helpers ---------------------------------------------------------------------------

    def _keep(self, current: Trusted, opened: Opened, now: int) -> int:
        pid = opened.hash
        if pid in self._refused and pid not in self._proposals:
            raise RosterError(RosterReason.TOO_LARGE, "this proposal was dropped here")
        old_keys = set(current.roster.keys())
        good = signers_of(opened, dict.fromkeys(old_keys | set(opened.roster.keys()), ""))
        old_good = good & old_keys
        if not old_good:
            raise RosterError(
                RosterReason.UNDER_SIGNED_OLD,
                "no trusted member signed this proposal (a co-op whose key rotated is not one under its"
                " new key: another member proposes the rotation, then it signs)",
            )
        if self._expires(opened, now) <= now:
            raise RosterError(RosterReason.MALFORMED, "this proposal has expired")
        if pid not in self._proposals:
            evict: list[str] = []
            for key in sorted(old_good):
                theirs = [p for p, signers in self._old_signers.items() if key in signers and p not in evict]
                if len(theirs) < MAX_PROPOSALS_PER_KEY:
                    continue
                alone = [p for p in theirs if self._old_signers[p] == {key}]
                if not alone:
                    raise RosterError(
                        RosterReason.TOO_LARGE,
                        f"{MAX_PROPOSALS_PER_KEY} proposals signed by {key[:16]} are pending already",
                    )
                evict += alone[: len(theirs) - MAX_PROPOSALS_PER_KEY + 1]
            rest = [p for p in self._proposals if p not in evict]
            evict += rest[: max(0, len(rest) - MAX_PROPOSALS + 1)]
            for victim in evict:
                self.store.drop_proposal(victim)
                self._note_refused(victim)
        kept = msgspec.structs.replace(
            opened.envelope, signatures=tuple(s for s in opened.envelope.signatures if s.keyid in good)
        )
        stored = self.store.merge_proposal(pid, opened.roster.version, _ENC.encode(kept), now=now)
        whole = open_roster(stored)
        if check_update(current, whole):
            self.trust([Trusted(roster=whole.roster, hash=whole.hash, envelope=stored)])
        else:
            self.reload(force=True)
        return 1

    def _equivocation(self, opened: Opened) -> bool:
        """Whether a valid version has the number of a trusted one and another hash (kept)."""
        current = self._current
        assert current is not None
        if opened.roster.federation != current.roster.federation or opened.hash in self._evidence:
            return False
        number = opened.roster.version
        mine = current if number == current.roster.version else self.version(number)
        if mine is None or mine.hash == opened.hash:
            return False  # an ordinary rollback: a version we hold
        if number == 1:
            valid = len(signers_of(opened, opened.roster.keys())) >= opened.roster.threshold
        else:
            before = self.version(number - 1)
            valid = before is not None and bool(check_update(before, opened))
        if not valid:
            self._note_refused(opened.hash)
            return False
        if len(self._evidence) < MAX_EVIDENCE:
            self.store.add_evidence(opened)
            self.reload(force=True)
        log.warning(
            "roster fork: two valid versions %d of federation %s (%s here, %s from a peer): "
            "k members signed both; kept as evidence",
            number,
            current.roster.federation,
            mine.hash[:16],
            opened.hash[:16],
        )
        return True

    def _prune(self, now: int) -> None:
        expired = [pid for pid, o in self._proposals.items() if self._expires(o, now) <= now]
        for pid in expired:
            self.store.drop_proposal(pid)
        if expired:
            self.reload(force=True)

    def _expires(self, opened: Opened, now: int) -> int:
        added = self._added.get(opened.hash, now)
        return min(opened.roster.expires_at, added + PROPOSAL_LIFETIME)

    def _note_refused(self, item_hash: str) -> None:
        self._refused.pop(item_hash, None)
        self._refused[item_hash] = None
        while len(self._refused) > MAX_REFUSED:
            del self._refused[next(iter(self._refused))]

    def _now(self, now: int | None) -> int | None:
        if now is not None:
            return now
        return None if self.clock is None else self.clock()

    def _version(self) -> int:
        return 0 if self._current is None else self._current.roster.version

    def _retag(self) -> None:
        current = self._current
        if current is None:
            self._tag = ""
            return
        # Forked: every hash of the equivocation, ours among them, so both sides of a fork agree
        # once they exchanged their evidence (the tag stops changing).
        forks = self.forks()
        head = ",".join(sorted(forks)) if forks else current.hash
        parts = [head] + [f"{pid}:{signer_tag(o)}" for pid, o in sorted(self._proposals.items())]
        self._tag = sha256_hex("|".join(parts).encode())
