"""What may leave the node, for whom, and in which form: the one disclosure policy.

Every exit of the node — release files (cut and served), federated releases,
manifest listings, record pulls by peers, tombstone lists, payout ledgers,
browse pages and leaderboards, publishing channels, eval answers — asks
:func:`disclose` (or :func:`admit`, for a release cut choosing what it takes)
and obeys the answer.  The function is pure: the record's own choices
(:class:`RecordFacts`), the collective state that governs it
(:class:`CollectiveState`, the origin's for a mirrored record) and the
:class:`Audience` in; a :class:`Disclosure` out.

The rules, in one place:

- **Withdrawn** content goes nowhere; the member and the admins still see that
  the record existed (metadata), and a tombstone names it only to an audience
  that had the record before (:func:`disclose_tombstone`).
- **Node** scope never leaves: it is read only by a federated evaluation run,
  which returns aggregates.
- **Federation** scope reaches the co-ops of the origin's federation (the
  peers it pinned, as its manifests list them), never the public.
- **Public** scope reaches the public only once a release cut admitted it.
- A release cut admits a record only outside any embargo and quality freeze,
  and within the volume cap; the same cut admits federation-scope records, so
  a peer receives exactly what the origin's own release gates let through.
- While the origin's embargo covers a record, or its quality freeze is on,
  nothing of it flows to peers or into a federated release, even if admitted
  earlier; already published release files of the co-op itself stay (they are
  out), but browse pages and new cuts honour the embargo.
- A **joint action** binding the co-op (k of the co-ops it names co-signed it, this one among
  them) adds to its own switches: a joint freeze or embargo (by tag, language or licence) holds
  records from every flow beyond the node and from new cuts; evaluation-only keeps records
  created since its start to evaluation runs.  The co-op's own pages honour a joint embargo and
  evaluation-only as they honour its own embargo; a joint freeze, like its own quality freeze,
  stops flows and cuts but does not hide its pages.  It cannot undo past licences: release
  files already published stay.
- A **gated** licence bucket (the co-op's ``access.gated``) reaches no public audience: its
  records leave only to a grantee (:attr:`Audience.GRANTEE`, the public's rules without the
  gate, for the co-op's own records), and to peers only where the co-op lets peers mirror
  gated records (``mirror_gated``).
- An equivocating (forked) origin contributes nothing.
- The **form** says which identifier may travel: anonymous records carry none,
  pseudonymous ones the pseudonym's own hash, credited ones the member's.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from typing import Final

import msgspec

from coop.governance.joint import JointRules
from coop.governance.record import AttributionMode, EvalConsent, License, Record, Scope
from coop.governance.settings import Embargo

__all__ = [
    "PEER_AUDIENCES",
    "PUBLIC_AUDIENCES",
    "Audience",
    "CollectiveState",
    "Disclosure",
    "Form",
    "Identifier",
    "Reason",
    "RecordFacts",
    "RecordState",
    "admit",
    "disclose",
    "disclose_tombstone",
    "pseudonym_hash",
    "public_form",
    "share_alike_mixed",
]


class Audience(enum.StrEnum):
    """Who receives what leaves."""

    PUBLIC = "public"  # anyone: release files, channels, browse pages, leaderboards, public ledgers
    PEER = "peer"  # a co-op of the origin's federation: manifest listings and record pulls
    FEDERATED = "federated"  # the public, through a federated release that re-publishes mirrors
    EVAL = "eval"  # a federated evaluation run: the record is scored, only aggregates leave
    ADMIN = "admin"  # this co-op's admins
    MEMBER = "member"  # the member who contributed the record
    GRANTEE = "grantee"  # a model builder granted access to gated buckets, through a signed URL


PUBLIC_AUDIENCES: Final = frozenset({Audience.PUBLIC, Audience.FEDERATED})
PEER_AUDIENCES: Final = frozenset({Audience.PEER})


class RecordState(enum.StrEnum):
    """Where a contribution is in the pipeline (the ``contributions.state`` column)."""

    WAITING_ROOM = "waiting_room"
    PROCESSING = "processing"
    QUARANTINED = "quarantined"
    ACCEPTED = "accepted"
    RELEASED = "released"
    WITHDRAWN = "withdrawn"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"

    @property
    def live(self) -> bool:
        """A processed record that has not left the published set."""
        return self in (RecordState.ACCEPTED, RecordState.RELEASED)


class Form(enum.StrEnum):
    """How much of a record leaves, from nothing to everything."""

    NONE = "none"  # nothing at all
    LISTING = "listing"  # uid, content hash, licence, ai_use, eval consent, scope (manifest entry)
    AGGREGATE = "aggregate"  # counted and scored inside an eval run; only aggregates leave
    RECORD = "record"  # the redacted record, with the identifier the attribution allows
    METADATA = "metadata"  # state and choices, no content (a withdrawn record to its member or admins)
    FULL = "full"  # the redacted record with the node's internal link to the member


class Identifier(enum.StrEnum):
    """Which contributor identifier may appear beside the record."""

    NONE = "none"  # anonymous: nothing that links it to any other record
    PSEUDONYM = "pseudonym"  # the pseudonym and a hash of it: links only records under that pseudonym
    MEMBER = "member"  # the member's handle and hash: links the member's credited records
    INTERNAL = "internal"  # the node's own link (admins and the member themself)


class Reason(enum.StrEnum):
    """Why a record may or may not leave (allowed, or the first rule that refused)."""

    ALLOWED = "allowed"
    WITHDRAWN = "withdrawn"
    NOT_LIVE = "not-live"  # still in the waiting room, quarantined, rejected, a duplicate
    NODE_SCOPE = "node-scope"
    FEDERATION_SCOPE = "federation-scope"
    OUTSIDE_FEDERATION = "outside-federation"
    NOT_ADMITTED = "not-admitted"  # no release cut of the origin admitted it
    EMBARGO = "embargo"
    QUALITY_FREEZE = "quality-freeze"
    FORKED = "forked"
    NO_EVAL_CONSENT = "no-eval-consent"
    JOINT_FREEZE = "joint-freeze"
    JOINT_EMBARGO = "joint-embargo"
    EVAL_ONLY = "eval-only"  # a joint action keeps it to evaluation runs
    GATED = "gated"  # its licence bucket is gated: only grantees may download it


class RecordFacts(msgspec.Struct, frozen=True, kw_only=True):
    """A record's own choices and standing, as the policy needs them (no content)."""

    uid: str
    scope: Scope
    license: License
    ai_use: str
    eval: EvalConsent
    attribution: AttributionMode
    state: RecordState
    admitted: bool  # a release cut of its origin admitted it (public: released; federation: listed)
    tags: tuple[str, ...] = ()
    language: str | None = None
    origin: str | None = None  # None: this node's own record; else the origin's node id
    created_at: int | None = None  # when the record was made (None: unknown)


class CollectiveState(msgspec.Struct, frozen=True, kw_only=True):
    """The collective decisions governing a record: its origin's, for a mirrored one."""

    embargo: Embargo = Embargo()
    quality_freeze: bool = False
    forked: bool = False  # the origin equivocated
    # Who federation scope reaches: the origin's federation (its pinned peers, as its manifest
    # lists them).  None: not known (an old manifest), so only the origin itself serves them.
    federation: frozenset[str] | None = None
    joint: JointRules = JointRules()  # what the joint actions binding the co-op demand now
    gated: frozenset[str] = frozenset()  # gated licence buckets (License values)
    mirror_gated: bool = False  # peers may mirror records of gated buckets


class Disclosure(msgspec.Struct, frozen=True):
    """The answer: the form that may leave (``NONE`` when nothing may), why, and which identifier."""

    form: Form
    reason: Reason
    identifier: Identifier = Identifier.NONE

    def __bool__(self) -> bool:
        return self.form is not Form.NONE

    @property
    def carries_content(self) -> bool:
        return self.form in (Form.RECORD, Form.FULL)


def _refuse(reason: Reason) -> Disclosure:
    return Disclosure(Form.NONE, reason)


def _public_identifier(mode: AttributionMode) -> Identifier:
    if mode is AttributionMode.USERNAME:
        return Identifier.MEMBER
    if mode is AttributionMode.PSEUDONYM:
        return Identifier.PSEUDONYM
    return Identifier.NONE


def _gated(record: RecordFacts, state: CollectiveState, *, evaluation: bool = False) -> Reason | None:
    """The collective gates every flow beyond the node passes: fork, freeze, embargo, joint actions."""
    if state.forked:
        return Reason.FORKED
    if state.quality_freeze:
        return Reason.QUALITY_FREEZE
    if state.embargo.covers(tags=record.tags, language=record.language):
        return Reason.EMBARGO
    return _joint_gate(record, state.joint, evaluation=evaluation)


def _joint_gate(
    record: RecordFacts, joint: JointRules, *, evaluation: bool = False, freeze: bool = True
) -> Reason | None:
    """What the joint actions binding the co-op hold back (evaluation-only lets an eval run in;
    ``freeze=False``: the joint freeze is not asked, for the co-op's own pages)."""
    if not joint:
        return None
    if freeze and joint.freeze:
        return Reason.JOINT_FREEZE
    if joint.covers(tags=record.tags, language=record.language, license=record.license):
        return Reason.JOINT_EMBARGO
    since = joint.eval_only_since
    if not evaluation and since is not None and (record.created_at is None or record.created_at >= since):
        return Reason.EVAL_ONLY
    return None


def admit(record: RecordFacts, state: CollectiveState) -> Disclosure:
    """May a release cut of this (own) record's co-op admit it now?

    The cut admits public records into the release files and federation-scope
    records into the federation's listing, under the same gates.  The volume
    cap is counted by the cut itself (it needs the month's tally); what it
    admits must pass here first.
    """
    if record.state is RecordState.WITHDRAWN:
        return _refuse(Reason.WITHDRAWN)
    if not record.state.live:
        return _refuse(Reason.NOT_LIVE)
    if record.scope is Scope.NODE:
        return _refuse(Reason.NODE_SCOPE)
    gate = _gated(record, state)
    if gate is not None:
        return _refuse(gate)
    form = Form.RECORD if record.scope is Scope.PUBLIC else Form.LISTING
    return Disclosure(form, Reason.ALLOWED, _public_identifier(record.attribution))


def disclose(
    record: RecordFacts,
    state: CollectiveState,
    audience: Audience,
    *,
    requester: str | None = None,
    snapshot: bool = False,
) -> Disclosure:
    """May ``record`` leave for ``audience``, and in which form?

    ``requester`` is the peer asking (its node id), for :attr:`Audience.PEER`.
    ``snapshot`` marks serving files of a release this co-op already published:
    the cut decided them, so today's embargo does not unpublish them (a
    withdrawal does: the files are revised).
    """
    if audience is Audience.MEMBER or audience is Audience.ADMIN:
        if record.state is RecordState.WITHDRAWN:
            return Disclosure(Form.METADATA, Reason.WITHDRAWN, Identifier.INTERNAL)
        return Disclosure(Form.FULL, Reason.ALLOWED, Identifier.INTERNAL)
    if record.state is RecordState.WITHDRAWN:
        return _refuse(Reason.WITHDRAWN)
    if not record.state.live:
        return _refuse(Reason.NOT_LIVE)
    if audience is Audience.EVAL:
        if record.eval is not EvalConsent.YES:
            return _refuse(Reason.NO_EVAL_CONSENT)
        if record.origin is not None:
            return _refuse(Reason.OUTSIDE_FEDERATION)  # a node evaluates only its own members' records
        gate = _gated(record, state, evaluation=True)
        if gate is not None:
            return _refuse(gate)
        return Disclosure(Form.AGGREGATE, Reason.ALLOWED)
    if record.scope is Scope.NODE:
        return _refuse(Reason.NODE_SCOPE)
    if not record.admitted:
        return _refuse(Reason.NOT_ADMITTED)
    identifier = _public_identifier(record.attribution)
    if audience is Audience.PEER:
        # A gated record is mirrored (where the origin lets it be) only within its federation,
        # as federation scope is: a peer outside it asking a mirror gets nothing of it.
        held_within = record.scope is Scope.FEDERATION or record.license.value in state.gated
        if held_within and not _in_federation(record, state, requester):
            return _refuse(Reason.OUTSIDE_FEDERATION)
        gate = _gated(record, state)
        if gate is None and not state.mirror_gated and record.license.value in state.gated:
            gate = Reason.GATED
        if gate is not None:
            return _refuse(gate)
        return Disclosure(Form.RECORD, Reason.ALLOWED, identifier)
    # The public: this co-op's releases, pages and channels, or a federated release; a grantee
    # has the public's rules without the gate (for this co-op's own records: a grant here is
    # not the origin's grant for a mirrored one).
    if record.scope is not Scope.PUBLIC:
        return _refuse(Reason.FEDERATION_SCOPE)
    if audience is Audience.GRANTEE and record.origin is None:
        audience = Audience.PUBLIC
    elif record.license.value in state.gated:
        gate = _public_gate(record, state, audience, snapshot=snapshot)
        return _refuse(gate if gate is not None else Reason.GATED)
    gate = _public_gate(record, state, audience, snapshot=snapshot)
    if gate is not None:
        return _refuse(gate)
    return Disclosure(Form.RECORD, Reason.ALLOWED, identifier)


def _public_gate(
    record: RecordFacts, state: CollectiveState, audience: Audience, *, snapshot: bool
) -> Reason | None:
    """What holds a public record back from the public (the gated bucket aside)."""
    if audience is Audience.FEDERATED or record.origin is not None:
        return _gated(record, state)
    if snapshot:
        return Reason.FORKED if state.forked else None
    if state.embargo.covers(tags=record.tags, language=record.language):
        return Reason.EMBARGO
    # The co-op's own pages: its quality freeze stops flows and cuts, not the pages showing what
    # it already released; a joint freeze is held to the same (a joint embargo and eval-only
    # hide, as its own embargo does).
    return _joint_gate(record, state.joint, freeze=False)


def _in_federation(record: RecordFacts, state: CollectiveState, requester: str | None) -> bool:
    if requester is None:
        return False
    if record.origin is None or requester == record.origin:
        # The origin's own records go to the peers it pinned; its federation is its pins.
        return state.federation is None or requester in state.federation
    return state.federation is not None and requester in state.federation


def disclose_tombstone(record: RecordFacts, state: CollectiveState, audience: Audience) -> Disclosure:
    """May a tombstone naming this withdrawn record go to ``audience``?

    Only to an audience that could have held the record: public tombstones for
    public records a cut admitted, peer tombstones for records a manifest listed.
    """
    if record.state is not RecordState.WITHDRAWN:
        return _refuse(Reason.NOT_LIVE)
    if audience in (Audience.MEMBER, Audience.ADMIN):
        return Disclosure(Form.LISTING, Reason.ALLOWED, Identifier.INTERNAL)
    if not record.admitted or record.scope is Scope.NODE:
        return _refuse(Reason.NOT_ADMITTED if record.scope is not Scope.NODE else Reason.NODE_SCOPE)
    if (audience in PUBLIC_AUDIENCES or audience is Audience.GRANTEE) and record.scope is not Scope.PUBLIC:
        return _refuse(Reason.FEDERATION_SCOPE)
    if audience is Audience.EVAL:
        return _refuse(Reason.WITHDRAWN)
    del state  # a withdrawal is announced whatever the switches say: holders must delete
    return Disclosure(Form.LISTING, Reason.ALLOWED)


def pseudonym_hash(salt: bytes, member_hash: str, pseudonym: str) -> str:
    """The public identifier of one pseudonym of one member: links only records under it.

    Keyed by the node's secret salt over the member's internal hash and the
    case-folded pseudonym, so two pseudonyms of one member share nothing.
    """
    message = f"pseudonym:{member_hash}:{pseudonym.casefold()}".encode()
    return hmac.new(salt, message, hashlib.sha256).hexdigest()


def public_form(record: Record, disclosure: Disclosure) -> Record:
    """The record as it may leave: the identifier reduced to what the disclosure allows."""
    if not disclosure.carries_content:
        raise ValueError(f"the disclosure allows no content ({disclosure.form})")
    if disclosure.identifier in (Identifier.MEMBER, Identifier.PSEUDONYM, Identifier.INTERNAL):
        return record
    if record.contributor_hash is None and record.attribution.name is None:
        return record
    return msgspec.structs.replace(
        record,
        contributor_hash=None,
        attribution=msgspec.structs.replace(record.attribution, name=None),
    )


def share_alike_mixed(licences: set[License] | frozenset[License]) -> bool:
    """Would one artifact holding these licences mix ShareAlike with anything else?"""
    return License.CC_BY_SA in licences and len(licences) > 1
