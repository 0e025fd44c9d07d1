"""The gossip state machine: manifests in, decisions out; what to ask peers for and what to give.

:class:`Book` holds what a node knows of every origin it federates with:
the verified manifest chain (head, high-water mark), the folded set of
entries, equivocation evidence, tombstones and mirrored record bytes.  It
reads and writes through a :class:`BookStore` (in memory here, SQLite in the
node) and never touches the network or the clock: callers pass ``now``.

Rules, for each manifest received (after :func:`check_manifest`):

* same origin and sequence as a stored one, same hash: a no-op, not rebroadcast;
* same origin and sequence, different hash: **equivocation** -- both kept as
  evidence, the origin flagged as forked, no winner picked;
* the next sequence whose ``prev`` is not the head's hash: equivocation too;
* evidence is bounded: two manifests prove a fork at a sequence, so no more are kept
  there, and at most :data:`MAX_EVIDENCE_SEQS` sequences of one origin hold evidence
  (the origin is flagged all the same);
* a key rotation of a forked origin that chains to the head may skip the sequences
  the fork took; when the origin is this node itself, it clears the flag here (the
  node knows its own chain; peers keep theirs until their admins decide);
* a sequence at or below the high-water mark that is not stored: rollback;
* beyond the next sequence: a gap (pull the chain in order);
* the newest manifest of a batch must not be expired (older links may be);
* the folded set must match every bucket's count and Merkle root.

What to pull is the disclosure policy's answer for this node as the requester,
under the collective state of the origin's latest manifest (embargo, freeze,
fork, federation): :meth:`Book.record_wants`.

Record bytes describe themselves (uid, licence, AI-use, eval consent, scope, tags,
language), so a peer cannot relabel them: bytes are kept only under a signed entry
whose every field they repeat (:func:`record_disagreement`).  A hash belongs to one
origin: one that another origin lists, held or withdrew is neither pulled nor kept
under a second origin's entry, and a tombstone keeps its bytes out under every origin.

Longer than ~500 lines on purpose: one state machine (receive, fold, decide, offer), whose rules
below are checked together by the property tests; its parts are not useful alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final, Protocol

import msgspec

from coop.federation.bucket_trees import BucketTrees, RootsPlan, touched_uids
from coop.federation.errors import ManifestError, Reason
from coop.federation.manifest import (
    DEFAULT_LIMITS,
    GENESIS,
    BucketRoot,
    Entry,
    Limits,
    Manifest,
    ManifestJoint,
    Tombstone,
    Verified,
    check_manifest,
)
from coop.federation.roster_gossip import RosterBook
from coop.governance import (
    AttributionMode,
    Audience,
    CollectiveState,
    Embargo,
    JointRules,
    License,
    Record,
    RecordFacts,
    RecordState,
    Scope,
    disclose,
    sha256_hex,
)

if TYPE_CHECKING:
    from coop.federation.joint import JointBook

__all__ = [
    "MAX_EVIDENCE_SEQS",
    "MIRRORABLE_LICENCES",
    "Accepted",
    "Book",
    "BookStore",
    "Decision",
    "DigestItem",
    "Duplicate",
    "Effects",
    "Equivocation",
    "Head",
    "MemoryBookStore",
    "RecordRefusal",
    "Rejected",
    "Want",
    "collective_state",
    "declared_joint",
    "digest_summary",
    "listed_facts",
    "record_disagreement",
    "wants",
]

# Every licence we take permits redistribution; a future non-redistributable one stays home.
MIRRORABLE_LICENCES: Final = frozenset({License.CC0, License.CC_BY, License.CC_BY_SA})
_MAX_SERVE: Final = 64
# Sequences of one origin that keep evidence (two manifests each): a forked origin is flagged
# by the first; the rest only show the fork went on.  Beyond this nothing more is stored.
MAX_EVIDENCE_SEQS: Final = 8


class Head(msgspec.Struct, frozen=True):
    """An origin's verified chain head: high-water sequence, its hash, the current key,
    and the collective state its latest manifest declares (what governs its records)."""

    seq: int
    hash: str
    key: str
    forked: bool = False
    embargo_whole: bool = False
    coop: str = ""
    embargo: Embargo = Embargo()
    quality_freeze: bool = False
    federation: tuple[str, ...] | None = None  # the node ids the origin pinned; None: not stated
    # The federation id of the roster the origin's latest manifest names as its federation
    # scope (its members, as this node's trusted roster lists them); None: it names none.
    roster: str | None = None
    # The licences (values) whose buckets the origin gates, sorted, and whether its federation
    # may mirror them (its latest manifest's ``gated`` / ``mirror_gated``).
    gated: tuple[str, ...] = ()
    mirror_gated: bool = False
    # What the joint actions binding the origin demand, as its latest manifest declares them
    # (``joint``: freeze, embargo selectors, evaluation-only start, the actions' ids).
    joint: JointRules = JointRules()


def declared_joint(joint: ManifestJoint | msgspec.UnsetType | None) -> JointRules:
    """A manifest's ``joint`` as the disclosure policy reads it (nothing when left out)."""
    if joint is None or isinstance(joint, msgspec.UnsetType):
        return JointRules()
    return JointRules(
        freeze=joint.freeze,
        embargoes=joint.embargoes,
        eval_only_since=joint.eval_only_since,
        actions=joint.actions,
    )


def collective_state(head: Head, rosters: Mapping[str, frozenset[str]] | None = None) -> CollectiveState:
    """The collective decisions governing an origin's records: its latest manifest's.

    A manifest naming a roster reaches that roster's members (``rosters``: federation id ->
    member ids, from this node's trusted roster); an unknown roster reaches no one else.
    """
    federation = None if head.federation is None else frozenset(head.federation)
    if head.roster is not None:
        federation = (rosters or {}).get(head.roster, frozenset()) | (federation or frozenset())
    return CollectiveState(
        embargo=head.embargo,
        quality_freeze=head.quality_freeze,
        forked=head.forked,
        federation=federation,
        gated=frozenset(head.gated),
        mirror_gated=head.mirror_gated,
        joint=head.joint,
    )


def listed_facts(origin: str, entry: Entry) -> RecordFacts:
    """A listed entry as the disclosure policy sees it: admitted by a cut of its origin, live.

    A listing names no contributor, so it is decided as anonymous (the strictest form);
    whether a record may travel never depends on its attribution.
    """
    return RecordFacts(
        uid=entry.uid,
        scope=entry.scope,
        license=entry.license,
        ai_use=entry.ai_use,
        eval=entry.eval,
        attribution=AttributionMode.ANONYMOUS,
        state=RecordState.ACCEPTED,
        admitted=True,
        tags=entry.tags,
        language=entry.language,
        origin=origin,
    )


_RECORD: Final = msgspec.json.Decoder(Record)


def record_disagreement(entry: Entry, data: bytes) -> str | None:
    """Why record bytes may not be kept under ``entry`` (None: they may).

    The bytes must be a record whose own uid, licence, AI-use preference, eval consent,
    scope, tags and language are the signed entry's: a peer listing another co-op's bytes
    under wider terms (public for federation, CC0 for ShareAlike, a fresh uid to dodge a
    tombstone) is caught here, whoever served the bytes.
    """
    if sha256_hex(data) != entry.hash:
        return "the bytes do not match the listed hash"
    try:
        record = _RECORD.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "the bytes are not a record"
    fields = ("uid", "license", "ai_use", "eval", "scope", "tags", "language")
    wrong = [name for name in fields if getattr(record, name) != getattr(entry, name)]
    if wrong:
        return "the record's own " + ", ".join(wrong) + " differ from the listed entry"
    return None


class RecordRefusal(msgspec.Struct, frozen=True):
    """Record bytes a node would not keep: under which origin's entry, and why."""

    origin: str
    uid: str
    hash: str
    # "record_mismatch" (wrong hash, not a record, relabelled) or "record_claimed" (another origin's)
    reason: str
    detail: str
    # The bytes hash to the listed hash: the server sent what was listed; the listing is wrong.
    served_as_listed: bool = False


class DigestItem(msgspec.Struct, frozen=True, array_like=True):
    seq: int
    hash: str
    evidence: tuple[str, ...] = ()


class Want(msgspec.Struct, frozen=True, array_like=True):
    """Manifests of ``origin`` after sequence ``after``, and evidence envelopes by hash."""

    origin: str
    after: int
    evidence: tuple[str, ...] = ()


class Effects(msgspec.Struct, frozen=True):
    """One atomic change to apply to a book's store."""

    origin: str
    store: tuple[tuple[int, str, bytes, bool], ...]  # (seq, hash, envelope, in_chain)
    head: Head | None = None
    added: tuple[Entry, ...] = ()
    tombstones: tuple[Tombstone, ...] = ()
    forked: bool = False
    unforked: bool = False  # this node rotated its own key away from a fork: clear its flag


class Accepted(msgspec.Struct, frozen=True):
    origin: str
    seq: int
    hash: str


class Duplicate(msgspec.Struct, frozen=True):
    origin: str
    seq: int
    hash: str


class Equivocation(msgspec.Struct, frozen=True):
    origin: str
    seq: int
    hashes: tuple[str, ...]


class Rejected(msgspec.Struct, frozen=True):
    reason: Reason
    detail: str
    origin: str | None = None
    seq: int | None = None


Decision = Accepted | Duplicate | Equivocation | Rejected


def _may_relay(
    origin: str,
    requester: str,
    self_id: str,
    heads: Mapping[str, Head],
    rosters: Mapping[str, frozenset[str]] | None = None,
) -> bool:
    """May ``origin``'s manifests go to ``requester``?  Its own; ours to our pinned peers (our
    federation) -- but once our manifests name a roster, only to its members: a signed
    manifest lists federation-scope records and cannot be trimmed for a pinned non-member;
    and another origin's to a co-op its latest manifest names (by its list, or by naming a
    roster whose member the requester is)."""
    if origin == requester:
        return True
    head = heads.get(origin)
    if origin == self_id and (head is None or head.roster is None):
        return True
    if head is None:
        return False
    if head.roster is not None and requester in (rosters or {}).get(head.roster, ()):
        return True
    return head.federation is not None and requester in head.federation


class BookStore(Protocol):
    """Where a book keeps what it knows (memory for the simulator, SQLite for a node)."""

    def heads(self) -> dict[str, Head]: ...

    def hashes_at(self, origin: str, seq: int) -> set[str]: ...

    def entries(self, origin: str) -> dict[str, Entry]: ...

    def evidence(self) -> dict[str, list[tuple[int, str]]]: ...

    def chain_after(self, origin: str, after: int, limit: int) -> list[bytes]: ...

    def envelopes(self, origin: str, hashes: Sequence[str]) -> list[bytes]: ...

    def apply(self, effects: Effects) -> None: ...

    def tombstoned(self, origin: str) -> set[str]: ...

    def records(self, hashes: Sequence[str]) -> dict[str, bytes]: ...

    def put_records(self, items: Sequence[tuple[str, Entry, bytes]]) -> None:
        """Keep record bytes, except under a tombstoned (origin, uid) or a tombstoned hash."""

    def claims(self, hashes: Sequence[str]) -> dict[str, set[tuple[str, str]]]:
        """Who each hash belongs to, as (origin, uid): the entries that list it, the copy held,
        the withdrawals.  Only a claim on the same uid contests another (the uid is inside the
        hashed bytes: a claim under another uid is a decoy the bytes will refute)."""

    def roots_after(
        self, origin: str, added: Sequence[Entry], tombstones: Sequence[Tombstone]
    ) -> tuple[BucketRoot, ...]:
        """The bucket roots of ``origin``'s set if ``added`` then ``tombstones`` were applied
        (nothing is changed; :meth:`apply` of the same change keeps what this worked out)."""

    def missing(self, origin: str) -> list[Entry]:
        """``origin``'s listed entries a peer may hold (mirrorable) that are not held here
        nor tombstoned, in uid order: kept as an index, read without walking the rest."""


_SORTED: Final = msgspec.json.Encoder(order="sorted")


def digest_summary(digest: Mapping[str, DigestItem]) -> str:
    """One hash for the whole digest: equal summaries mean nothing to exchange.

    The digest holds only hex strings and small integers, so sorted msgspec output is
    already canonical; it is computed on every exchange, without the validating walk.
    """
    return sha256_hex(_SORTED.encode(dict(digest)))


def wants(
    local: Mapping[str, DigestItem], remote: Mapping[str, DigestItem], pinned: Container[str]
) -> list[Want]:
    """What to pull from a peer, evidence first.

    A peer ahead of us: its chain after our head.  A peer at our sequence with another
    hash: its manifest at that sequence (two signed histories -- equivocation to record).
    """
    out: list[Want] = []
    for origin in sorted(origin for origin in remote if origin in pinned):
        theirs, ours = remote[origin], local.get(origin)
        after = ours.seq if ours else 0
        missing = tuple(sorted(set(theirs.evidence) - set(ours.evidence if ours else ())))
        if theirs.seq > after:
            out.append(Want(origin=origin, after=after, evidence=missing))
        elif ours is not None and theirs.seq == ours.seq > 0 and theirs.hash != ours.hash:
            out.append(Want(origin=origin, after=theirs.seq - 1, evidence=missing))
        elif missing:
            out.append(Want(origin=origin, after=theirs.seq, evidence=missing))
    out.sort(key=lambda w: (not w.evidence, w.origin))
    return out


def fold(entries: Mapping[str, Entry], manifest: Manifest) -> dict[str, Entry]:
    folded = dict(entries)
    for entry in manifest.added():
        folded[entry.uid] = entry
    for tomb in manifest.tombstones:
        folded.pop(tomb.uid, None)
    return folded


class _Known:
    """The pinned origins and this node, tested one origin at a time (the pins are not copied)."""

    __slots__ = ("pinned", "self_id")

    def __init__(self, pinned: Mapping[str, str], self_id: str) -> None:
        self.pinned = pinned
        self.self_id = self_id

    def __contains__(self, origin: object) -> bool:
        return origin == self.self_id or origin in self.pinned


class Book:
    """What one node knows of its federation, and the rules for changing it."""

    def __init__(
        self, self_id: str, pinned: Mapping[str, str], store: BookStore, *, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self.self_id = self_id
        # key hex -> origin (trusted_keys), kept until the pins or a head's key change.
        self._trusted: dict[str, str] | None = None
        self._trusted_pins: tuple[int, int] = (0, -1)
        self.pinned = dict(pinned)  # origin -> the key it was pinned with (its id)
        # The federation roster this node trusts, when it has one (set by the node).
        self.roster: RosterBook | None = None
        # The joint actions this node holds, when it keeps them (set by the node).
        self.joint: JointBook | None = None
        self.store = store
        self.limits = limits
        # Origins whose every mirrorable record is held: skipped until a new manifest comes.
        self._complete: set[str] = set()
        # Entries (origin, uid, hash) whose bytes were refused: not asked for again until
        # the origin's next manifest (a relabelled entry would be refused every round).
        self._refused: set[tuple[str, str, str]] = set()

    @property
    def pinned(self) -> dict[str, str]:
        """Origin -> the key it was pinned with (its id).  Replace it (``book.pinned = ...``)
        rather than change a key in place: adding or removing an origin in place is noticed too."""
        return self._pinned

    @pinned.setter
    def pinned(self, pins: dict[str, str]) -> None:
        self._pinned = pins  # as given: the simulator shares one mapping between its books
        self._trusted = None

    def known(self) -> Container[str]:
        """The origins this node exchanges manifests of: the pinned ones and itself."""
        return _Known(self._pinned, self.self_id)

    # -- digests ------------------------------------------------------------------

    def digest(self) -> dict[str, DigestItem]:
        evidence = self.store.evidence()
        out = {}
        for origin, head in self.store.heads().items():
            if origin in self.pinned or origin == self.self_id:
                hashes = tuple(sorted(h for _, h in evidence.get(origin, ())))
                out[origin] = DigestItem(seq=head.seq, hash=head.hash, evidence=hashes)
        for origin, items in evidence.items():
            if origin not in out and (origin in self.pinned or origin == self.self_id):
                out[origin] = DigestItem(seq=0, hash=GENESIS, evidence=tuple(sorted(h for _, h in items)))
        return out

    def summary(self) -> str:
        """Equal summaries: nothing to exchange (manifests, and the roster when there is one)."""
        summary = digest_summary(self.digest())
        tag = "" if self.roster is None else self.roster.tag()
        summary = summary if not tag else sha256_hex(f"{summary}:{tag}".encode())
        from coop.federation.joint_gossip import joint_tag

        joint = joint_tag(self.joint)
        return summary if not joint else sha256_hex(f"{summary}:joint:{joint}".encode())

    def roster_scopes(self) -> dict[str, frozenset[str]]:
        """Federation id -> member ids of the roster this node trusts ({} without one)."""
        return {} if self.roster is None else self.roster.scopes()

    def wants(self, remote: Mapping[str, DigestItem]) -> list[Want]:
        return wants(self.digest(), remote, self.known())

    def serve(
        self, requested: Sequence[Want], *, max_items: int = _MAX_SERVE, requester: str | None = None
    ) -> list[bytes]:
        """Envelopes a peer asked for: evidence pairs first, then chains in order, bounded.

        With ``requester`` (the peer's verified node id), another origin's manifests go only to
        a co-op of that origin's federation (its latest manifest's list): a signed manifest
        lists its federation-scope records and cannot be trimmed, so it is not relayed beyond.
        """
        out: list[bytes] = []
        known: Container[str] = self.known()
        if requester is not None:
            heads = self.store.heads()
            scopes = self.roster_scopes()
            known = {
                want.origin
                for want in requested
                if want.origin in known and _may_relay(want.origin, requester, self.self_id, heads, scopes)
            }
        evidence = self.store.evidence()
        for want in requested:
            if want.origin not in known or len(out) >= max_items:
                continue
            if want.evidence:
                seqs = {seq for seq, h in evidence.get(want.origin, ()) if h in want.evidence}
                # Send each conflicting pair whole: evidence is only evidence beside its twin.
                pair_hashes = sorted(
                    {h for seq, h in evidence.get(want.origin, ()) if seq in seqs}
                    | {h for seq in seqs for h in self.store.hashes_at(want.origin, seq)}
                )
                out += self.store.envelopes(want.origin, pair_hashes)
        for want in requested:
            if want.origin in known and len(out) < max_items:
                out += self.store.chain_after(want.origin, want.after, max_items - len(out))
        return out[:max_items]

    def trusted_keys(self) -> dict[str, str]:
        """Key hex -> origin: each pinned origin's head key, or its pinned key before a head.

        Kept between calls (rebuilding it over 10,000 members on every receive dominated a
        changed round): rebuilt when ``pinned`` is replaced or gains or loses an origin, and
        when this book accepts a manifest that changes its origin's key.  The book is its
        store's only writer of heads (one per node; the node's rounds replace the pins anyway).
        Read it, do not change it.
        """
        pins = self._pinned
        stamp = (id(pins), len(pins))
        if self._trusted is None or self._trusted_pins != stamp:
            heads = self.store.heads()
            keys = {key: origin for origin, key in pins.items() if origin not in heads}
            keys.update({head.key: origin for origin, head in heads.items() if origin in pins})
            self._trusted, self._trusted_pins = keys, stamp
        return self._trusted

    # -- receiving ----------------------------------------------------------------

    def receive(self, envelopes: Iterable[bytes], *, now: int) -> list[Decision]:
        """Verify and apply manifests from a peer, in sequence order per origin."""
        pending = list(dict.fromkeys(envelopes))
        decisions: list[Decision] = []
        failures: dict[bytes, ManifestError] = {}
        # A key rotation accepted in one pass makes later manifests verifiable in the next;
        # stop when a pass verifies nothing new (at most one pass per envelope).
        for _ in range(len(pending)):
            trusted = self.trusted_keys()
            ready: list[Verified] = []
            rest: list[bytes] = []
            for data in pending:
                try:
                    ready.append(check_manifest(data, trusted=trusted, limits=self.limits))
                except ManifestError as exc:
                    failures[data] = exc
                    rest.append(data)
            if not ready:
                break
            decisions += self._apply_verified(ready, now=now)
            pending = rest
            if not pending:
                break
        for data in pending:
            failure = failures[data]
            decisions.append(Rejected(reason=failure.reason, detail=failure.message))
        return decisions

    def _apply_verified(self, batch: list[Verified], *, now: int) -> list[Decision]:
        decisions: list[Decision] = []
        groups: dict[tuple[str, int], dict[str, Verified]] = defaultdict(dict)
        for item in batch:
            groups[(item.manifest.origin, item.manifest.seq)][item.hash] = item
        newest: dict[str, int] = {}
        for origin, seq in groups:
            newest[origin] = max(newest.get(origin, 0), seq)
        for (origin, seq), items in sorted(groups.items()):
            if origin not in self.pinned:
                decisions.append(Rejected(Reason.UNKNOWN_KEY, "origin is not a pinned member", origin, seq))
                continue
            stored = self.store.hashes_at(origin, seq)
            fresh = {h: v for h, v in items.items() if h not in stored}
            for h in items:
                if h in stored:
                    decisions.append(Duplicate(origin=origin, seq=seq, hash=h))
            if not fresh:
                continue
            if len(stored | set(fresh)) > 1:
                decisions.append(self._equivocation(origin, seq, stored, list(fresh.values())))
                continue
            (item,) = fresh.values()
            decisions.append(self._next(item, latest=seq == newest[origin], now=now))
        return decisions

    def _evidence_room(self, origin: str, seq: int) -> int:
        """How many more manifests at ``seq`` are worth keeping as evidence (a pair proves a fork)."""
        seqs = {s for s, _ in self.store.evidence().get(origin, ())}
        if seq not in seqs and len(seqs) >= MAX_EVIDENCE_SEQS:
            return 0
        return max(0, 2 - len(self.store.hashes_at(origin, seq)))

    def _equivocation(self, origin: str, seq: int, stored: set[str], fresh: list[Verified]) -> Equivocation:
        kept = sorted(fresh, key=lambda v: v.hash)[: self._evidence_room(origin, seq)]
        self.store.apply(
            Effects(origin=origin, store=tuple((seq, v.hash, v.envelope, False) for v in kept), forked=True)
        )
        return Equivocation(origin=origin, seq=seq, hashes=tuple(sorted(stored | {v.hash for v in fresh})))

    def _next(self, item: Verified, *, latest: bool, now: int) -> Decision:
        m = item.manifest
        head = self.store.heads().get(m.origin)
        high = head.seq if head else 0
        if m.seq <= high:
            return Rejected(Reason.ROLLBACK, f"sequence {m.seq} is not after {high}", m.origin, m.seq)
        # A forked origin rotating its key past the sequences the fork took (chained to the head).
        recovery = head is not None and head.forked and m.rotate_to is not None and m.prev == head.hash
        if m.seq > high + 1 and not recovery:
            return Rejected(Reason.GAP, f"sequence {m.seq} does not follow {high}", m.origin, m.seq)
        if latest and now >= m.expires_at:
            return Rejected(Reason.EXPIRED, f"manifest {m.seq} expired", m.origin, m.seq)
        if head is not None and m.prev != head.hash:
            # A successor to a history we do not hold: the origin signed two histories.
            kept = ((m.seq, item.hash, item.envelope, False),)[: self._evidence_room(m.origin, m.seq)]
            self.store.apply(Effects(origin=m.origin, store=kept, forked=True))
            return Equivocation(origin=m.origin, seq=m.seq, hashes=(item.hash,))
        if self.store.roots_after(m.origin, m.added(), m.tombstones) != m.roots:
            return Rejected(
                Reason.BAD_MERKLE_ROOT, "the folded set does not match the roots", m.origin, m.seq
            )
        unforked = recovery and m.origin == self.self_id
        if (head.key if head else self.pinned.get(m.origin)) != (m.rotate_to or m.key):
            self._trusted = None  # a new key for this origin (a rotation): trusted_keys again
        new_head = Head(
            seq=m.seq,
            hash=item.hash,
            key=m.rotate_to or m.key,
            forked=(head.forked and not unforked) if head else False,
            embargo_whole=m.state.embargo.whole,
            coop=m.coop,
            embargo=m.state.embargo,
            quality_freeze=m.state.quality_freeze,
            federation=m.federation,
            roster=None if isinstance(m.roster, msgspec.UnsetType) else m.roster.federation,
            gated=() if isinstance(m.gated, msgspec.UnsetType) else tuple(g.value for g in m.gated),
            mirror_gated=m.mirror_gated is True,
            joint=declared_joint(m.joint),
        )
        self.store.apply(
            Effects(
                origin=m.origin,
                store=((m.seq, item.hash, item.envelope, True),),
                head=new_head,
                added=tuple(m.added()),
                tombstones=m.tombstones,
                unforked=unforked,
            )
        )
        self._complete.discard(m.origin)
        self._refused = {r for r in self._refused if r[0] != m.origin}
        return Accepted(origin=m.origin, seq=m.seq, hash=item.hash)

    # -- records ----------------------------------------------------------------------

    def record_wants(self, *, limit: int = 1000) -> list[tuple[str, Entry]]:
        """Records this node may mirror and lacks: (origin, entry), bounded.

        The disclosure policy decides, with the collective state of the origin's latest
        manifest: nothing while it is forked or frozen, nothing its embargo covers, and
        federation-scope records only if this node is in the origin's federation.  A hash
        another origin lists, held or withdrew is not asked for under this one (no peer is
        asked to hand over one co-op's bytes as another's), nor is one refused already.
        """
        out: list[tuple[str, Entry]] = []
        for origin, head in sorted(self.store.heads().items()):
            if origin == self.self_id or origin not in self.pinned or origin in self._complete:
                continue
            state = collective_state(head, self.roster_scopes())
            # The index holds the mirrorable entries neither held nor tombstoned; the policy
            # (which the origin's state can change without any entry changing) is applied here.
            candidates = [
                e
                for e in self.store.missing(origin)
                if disclose(listed_facts(origin, e), state, Audience.PEER, requester=self.self_id)
            ]
            claims = self.store.claims([e.hash for e in candidates])
            missing = [
                (origin, e)
                for e in candidates
                if not _contested(claims.get(e.hash, ()), origin, e.uid)
                and (origin, e.uid, e.hash) not in self._refused
            ]
            if not missing:
                self._complete.add(origin)
            out += missing
            if len(out) >= limit:
                break
        return out[:limit]

    def receive_records(self, wanted: Sequence[tuple[str, Entry]], got: Mapping[str, bytes]) -> list[str]:
        """Keep record bytes that may be kept under their entry; return the hashes refused."""
        return [refusal.hash for refusal in self.accept_records(wanted, got)]

    def accept_records(
        self, wanted: Sequence[tuple[str, Entry]], got: Mapping[str, bytes]
    ) -> list[RecordRefusal]:
        """Keep record bytes that repeat their entry's every field (:func:`record_disagreement`)
        and whose hash no other origin lists, held or withdrew; say why the rest were refused."""
        good: list[tuple[str, Entry, bytes]] = []
        refused: list[RecordRefusal] = []
        claims = self.store.claims([entry.hash for _, entry in wanted if entry.hash in got])
        for origin, entry in wanted:
            data = got.get(entry.hash)
            if data is None:
                continue
            problem, reason = record_disagreement(entry, data), "record_mismatch"
            if problem is None and _contested(claims.get(entry.hash, ()), origin, entry.uid):
                problem, reason = "the hash belongs to another origin's record", "record_claimed"
            if problem is None:
                good.append((origin, entry, data))
                continue
            as_listed = sha256_hex(data) == entry.hash
            if reason == "record_claimed" or as_listed:
                # The right bytes under a wrong entry: asking another peer brings the same.
                self._refused.add((origin, entry.uid, entry.hash))
            refused.append(RecordRefusal(origin, entry.uid, entry.hash, reason, problem, as_listed))
        if good:
            self.store.put_records(good)
        return refused


def _contested(claims: Iterable[tuple[str, str]], origin: str, uid: str) -> bool:
    """Another origin claims the same record (the same uid under the same hash)."""
    return any(other != origin and claimed == uid for other, claimed in claims)


_MIRRORED_SCOPES: Final = frozenset({Scope.FEDERATION, Scope.PUBLIC})


def mirrorable(entry: Entry) -> bool:
    """May a peer hold a copy? Federation or public scope, and a licence that allows it."""
    return entry.scope in _MIRRORED_SCOPES and entry.license in MIRRORABLE_LICENCES


def _withdrawn_uid(withdrawn: Mapping[str, set[tuple[str, str]]], digest: str, uid: str) -> bool:
    return any(claimed == uid for _, claimed in withdrawn.get(digest, ()))


class MemoryBookStore:
    """A book's store in memory: the simulator's and the tests' twin of the node's SQLite one.

    Beside the entries it keeps each origin's bucket trees (roots re-made at the cost of a
    change), the entries listing each hash, and each origin's missing entries (mirrorable,
    not held, not tombstoned): what :meth:`Book.record_wants` reads.
    """

    def __init__(self) -> None:
        self._heads: dict[str, Head] = {}
        self._manifests: dict[tuple[str, int], dict[str, tuple[bytes, bool]]] = defaultdict(dict)
        self._entries: dict[str, dict[str, Entry]] = defaultdict(dict)
        self._tombstones: dict[str, set[str]] = defaultdict(set)
        self._records: dict[str, tuple[str, Entry, bytes]] = {}
        self._evidence: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self._withdrawn: dict[str, set[tuple[str, str]]] = defaultdict(set)  # hash -> (origin, uid) withdrawn
        self._trees: dict[str, BucketTrees] = defaultdict(BucketTrees)
        self._listing: dict[str, tuple[tuple[str, str], ...]] = {}  # hash -> (origin, uid) listing it
        self._missing: dict[str, dict[str, Entry]] = defaultdict(dict)
        # The change roots_after worked out last, kept for the apply that follows it.
        self._planned: tuple[str, tuple[Entry, ...], tuple[Tombstone, ...], RootsPlan] | None = None

    def heads(self) -> dict[str, Head]:
        return dict(self._heads)

    def hashes_at(self, origin: str, seq: int) -> set[str]:
        return set(self._manifests.get((origin, seq), {}))

    def entries(self, origin: str) -> dict[str, Entry]:
        return dict(self._entries.get(origin, {}))

    def evidence(self) -> dict[str, list[tuple[int, str]]]:
        return {k: list(v) for k, v in self._evidence.items() if v}

    def chain_after(self, origin: str, after: int, limit: int) -> list[bytes]:
        head = self._heads.get(origin)
        out: list[bytes] = []
        if head is None:
            return out
        for seq in range(after + 1, head.seq + 1):
            for data, in_chain in self._manifests.get((origin, seq), {}).values():
                if in_chain:
                    out.append(data)
            if len(out) >= limit:
                break
        return out[:limit]

    def envelopes(self, origin: str, hashes: Sequence[str]) -> list[bytes]:
        wanted = set(hashes)
        return [
            data
            for (o, _), items in sorted(self._manifests.items())
            if o == origin
            for h, (data, _) in sorted(items.items())
            if h in wanted
        ]

    def roots_after(
        self, origin: str, added: Sequence[Entry], tombstones: Sequence[Tombstone]
    ) -> tuple[BucketRoot, ...]:
        plan = self._plan(origin, tuple(added), tuple(tombstones))
        self._planned = (origin, tuple(added), tuple(tombstones), plan)
        return plan.roots

    def _plan(self, origin: str, added: tuple[Entry, ...], tombstones: tuple[Tombstone, ...]) -> RootsPlan:
        planned = self._planned
        if (
            planned is not None
            and planned[:3] == (origin, added, tombstones)
            and self._trees[origin].fits(planned[3])
        ):
            return planned[3]
        entries = self._entries.get(origin, {})
        stored = {uid: entries[uid] for uid in touched_uids(added, tombstones) if uid in entries}
        return self._trees[origin].plan(stored, added, tombstones)

    def _index(self, origin: str, uid: str) -> None:
        """Put (origin, uid) in or out of the missing index, as it stands now."""
        entry = self._entries.get(origin, {}).get(uid)
        if (
            entry is not None
            and mirrorable(entry)
            and uid not in self._tombstones.get(origin, ())
            and entry.hash not in self._records
        ):
            self._missing[origin][uid] = entry
        else:
            self._missing[origin].pop(uid, None)

    def apply(self, effects: Effects) -> None:
        origin = effects.origin
        for seq, digest, data, in_chain in effects.store:
            self._manifests[(origin, seq)][digest] = (data, in_chain)
        if effects.forked:
            for seq, _, _, in_chain in effects.store:
                if in_chain:
                    continue
                # Every manifest at a conflicting sequence is evidence, the chain's own included.
                for digest in self._manifests[(origin, seq)]:
                    if (seq, digest) not in self._evidence[origin]:
                        self._evidence[origin].append((seq, digest))
            head = self._heads.get(origin)
            if head is not None:
                self._heads[origin] = msgspec.structs.replace(head, forked=True)
        if effects.head is not None:
            self._heads[origin] = effects.head
        if effects.added or effects.tombstones:
            self._trees[origin].commit(self._plan(origin, effects.added, effects.tombstones))
        self._planned = None
        entries, listing, missing = self._entries[origin], self._listing, self._missing[origin]
        dead, records = self._tombstones.get(origin, ()), self._records
        for entry in effects.added:
            uid = entry.uid
            old = entries.get(uid)
            if old is not None:
                listing[old.hash] = tuple(c for c in listing.get(old.hash, ()) if c != (origin, uid))
            entries[uid] = entry
            listing[entry.hash] = (*listing.get(entry.hash, ()), (origin, uid))
            if (
                entry.scope in _MIRRORED_SCOPES
                and entry.license in MIRRORABLE_LICENCES
                and uid not in dead
                and entry.hash not in records
            ):
                missing[uid] = entry
            else:
                missing.pop(uid, None)
        gone = {tomb.uid for tomb in effects.tombstones}
        for uid in gone:
            listed = entries.pop(uid, None)
            if listed is not None:
                self._withdrawn[listed.hash].add((origin, uid))
                listing[listed.hash] = tuple(c for c in listing.get(listed.hash, ()) if c != (origin, uid))
            missing.pop(uid, None)
        self._tombstones[origin] |= gone
        if gone:
            # A tombstone deletes the mirrored copy of that record (the same uid in the same
            # bytes) under whichever origin holds it, and nothing brings it back; a copy of
            # another uid is not this withdrawal's to delete.
            for digest, (holder, entry, _) in list(self._records.items()):
                if (holder == origin and entry.uid in gone) or _withdrawn_uid(
                    self._withdrawn, digest, entry.uid
                ):
                    self._withdrawn[digest].add((holder, entry.uid))
                    del self._records[digest]
                    for lister, uid in self._listing.get(digest, ()):
                        self._index(lister, uid)  # no longer held: missing again where it may be

    def missing(self, origin: str) -> list[Entry]:
        return [entry for _, entry in sorted(self._missing.get(origin, {}).items())]

    def tombstoned(self, origin: str) -> set[str]:
        return set(self._tombstones.get(origin, ()))

    def records(self, hashes: Sequence[str]) -> dict[str, bytes]:
        return {h: self._records[h][2] for h in hashes if h in self._records}

    def put_records(self, items: Sequence[tuple[str, Entry, bytes]]) -> None:
        for origin, entry, data in items:
            try:
                own_uid = _RECORD.decode(data).uid  # the record's own uid, whatever the entry says
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            if (
                entry.uid not in self._tombstones.get(origin, set())
                and not _withdrawn_uid(self._withdrawn, entry.hash, own_uid)
                and entry.hash not in self._records
            ):
                self._records[entry.hash] = (origin, entry, data)
                for lister, uid in self._listing.get(entry.hash, ()):
                    self._missing[lister].pop(uid, None)

    def claims(self, hashes: Sequence[str]) -> dict[str, set[tuple[str, str]]]:
        out: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for digest in set(hashes):
            out[digest].update(self._listing.get(digest, ()))
            if digest in self._records:
                holder, entry, _ = self._records[digest]
                out[digest].add((holder, entry.uid))
            out[digest] |= self._withdrawn.get(digest, set())
        return {digest: claims for digest, claims in out.items() if claims}

    def mirrored(self) -> dict[str, tuple[str, Entry, bytes]]:
        return dict(self._records)
