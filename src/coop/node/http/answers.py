"""The shapes of the JSON the API answers where a handler builds it from parts (for /schema).

Most answers are a domain Struct and are documented by their own type; these are the
dictionaries the handlers assemble.  schemathesis checks every answer against them
(tests/integration/test_schemathesis.py), so a handler and its shape cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from coop.governance import Defaults
from coop.governance.envelope import Envelope
from coop.governance.record import Record
from coop.node.config import LimitsConfig
from coop.node.contributions.repository import ContributionView
from coop.node.contributions.submission import ContributionState, Submission
from coop.node.intake.redaction import Hit
from coop.node.peering.service import OriginView
from coop.node.scheduler import JobHealth

__all__ = [
    "AuditCheck",
    "ContributionShown",
    "Decided",
    "Edited",
    "EventsAccepted",
    "FederationIdentity",
    "GovernanceState",
    "Health",
    "LocalIdentity",
    "ManifestListing",
    "MeView",
    "MirroredRecord",
    "NodeInfo",
    "OriginDetail",
    "Preview",
    "QuarantineItem",
    "Stored",
    "Withdrawn",
]


class NodeInfo(TypedDict):
    node_id: str
    fingerprint: str
    name: str
    terms_version: str
    defaults: Defaults
    limits: LimitsConfig


class Health(TypedDict):
    status: Literal["ok", "stale"]
    schema: int
    embargo: bool
    quality_freeze: bool
    stale: list[str]
    jobs: dict[str, JobHealth]


class _Links(TypedDict):
    self: str


class Stored(TypedDict):
    """A contribution stored (201), or the one an earlier request with this Idempotency-Key stored (200)."""

    uid: str
    state: ContributionState
    created: bool
    notices: list[str]
    links: _Links


class MeView(TypedDict):
    name: str
    role: str
    announce: bool  # may the co-op's microblog and feed announce my released records


class ContributionShown(TypedDict):
    """What the member (or an admin) may see; submission and record are null once withdrawn."""

    contribution: ContributionView
    submission: Submission | None
    record: Record | None


class Edited(TypedDict):
    uid: str
    state: ContributionState
    replaces: str | None
    notices: list[str]


class Withdrawn(TypedDict):
    uid: str
    state: ContributionState


class Preview(TypedDict):
    text: str
    hits: list[Hit]
    counts: dict[str, int]


class EventsAccepted(TypedDict):
    accepted: int


class QuarantineItem(TypedDict):
    contribution: ContributionView
    submission: Submission | None
    hits: list[list[Hit]]


class Decided(TypedDict):
    uid: str
    state: ContributionState
    decided_by: str


class _AuditHead(TypedDict):
    seq: int
    hash: str


class GovernanceState(TypedDict):
    settings_version: int
    settings_digest: str
    embargo: Any
    quality_freeze: bool
    audit_head: _AuditHead | None


class AuditCheck(TypedDict):
    """``ok`` and the chain report: where and why the chain breaks, if it does."""

    ok: bool
    checked: int
    first_bad: int | None
    problem: str | None
    key: str
    warning: str | None


class FederationIdentity(TypedDict):
    node_id: str
    public_key: str
    fingerprint: str
    coop: str


class ManifestListing(TypedDict):
    seq: int
    hash: str
    in_chain: bool
    evidence: bool
    received_at: int


class OriginDetail(TypedDict):
    origin: OriginView
    manifests: list[ManifestListing]


class MirroredRecord(TypedDict):
    uid: str
    hash: str
    license: str
    ai_use: str
    eval: str
    scope: str


class LocalIdentity(TypedDict):
    node_id: str


# The DSSE envelope a release statement or a manifest travels in.
SignedEnvelope = Envelope
