"""A revision's statement: ``revisions/rK.dsse.json``, what one revision of a release removed and why.

Signed by the node when the revision is made (DSSE, like ``release.dsse.json``),
it names the records removed where the tombstone policy lets this audience see
them named, why, and every changed file's old and new SHA-256; holders of a copy
downloaded before use it to delete what they must.  Made by
:mod:`coop.node.releases.revision`.
"""

from __future__ import annotations

from typing import Final

import msgspec

from coop.governance import (
    AttributionMode,
    Audience,
    CollectiveState,
    EvalConsent,
    License,
    RecordFacts,
    RecordState,
    Scope,
    disclose_tombstone,
)
from coop.governance.envelope import open_envelope, valid_signers
from coop.governance.errors import InvalidValueError
from coop.node.errors import NodeError
from coop.node.releases.model import ReleaseSummary

__all__ = [
    "REASONS",
    "REVISIONS_DIR",
    "REVISION_PAYLOAD_TYPE",
    "ChangedFile",
    "Removed",
    "RemovedRecord",
    "RevisionStatement",
    "revision_statement",
    "row_choices",
    "verify_revision",
]

REVISIONS_DIR: Final = "revisions"
REVISION_PAYLOAD_TYPE: Final = "application/vnd.coop-flywheel.release-revision+json"
_MAX_STATEMENT: Final = 64 * 1024 * 1024
REASONS: Final = {
    "withdrawn": "withdrawn by the member",
    "rectified": "rectified by the member (replaced by a new record)",
}
_NOTICE: Final = (
    "These records were removed from every copy of this release the co-op still serves. Copies "
    "downloaded before cannot be recalled: if you hold one, delete the records named here."
)
_ANY_STATE: Final = CollectiveState()


class RemovedRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    uid: str
    reason: str
    origin: str | None = None  # a federated release: the co-op the record came from


class ChangedFile(msgspec.Struct, frozen=True):
    path: str
    old_sha256: str | None  # None: the file is new in this revision
    new_sha256: str | None  # None: the file is gone in this revision


class RevisionStatement(msgspec.Struct, frozen=True, kw_only=True):
    """What one revision of a release removed and why, signed by the node: ``revisions/rK.dsse.json``.

    ``files`` holds every file of the release whose content changed except
    ``SHA256SUMS`` (which lists this statement's own SHA-256).
    """

    release: str
    federated: bool
    coop: str
    node_id: str
    revision: int
    previous_revision: int
    at: int
    reason: str
    removed: tuple[RemovedRecord, ...]
    unnamed: int = 0  # removed records the tombstone policy does not let this audience see named
    files: tuple[ChangedFile, ...]
    notice: str = _NOTICE


class _Attribution(msgspec.Struct):
    mode: AttributionMode = AttributionMode.ANONYMOUS


class Choices(msgspec.Struct):
    """What the tombstone policy reads of a removed row (the row's own choices, as released)."""

    uid: str
    scope: Scope
    license: License
    ai_use: str = ""
    eval: EvalConsent = EvalConsent.NO
    attribution: _Attribution = msgspec.field(default_factory=_Attribution)


_CHOICES: Final = msgspec.json.Decoder(Choices)
_STATEMENT: Final = msgspec.json.Decoder(RevisionStatement)


class Removed(msgspec.Struct, frozen=True):
    """A row a revision took out: its (origin, uid) and its line as released."""

    key: tuple[str, str]
    line: bytes


def row_choices(removed: Removed) -> Choices:
    return _CHOICES.decode(removed.line)


def _facts(removed: Removed, *, origin: str | None) -> RecordFacts:
    """The policy's view of a removed row: withdrawn, and admitted (the release held it)."""
    row = row_choices(removed)
    return RecordFacts(
        uid=row.uid,
        scope=row.scope,
        license=row.license,
        ai_use=row.ai_use,
        eval=row.eval,
        attribution=row.attribution.mode,
        state=RecordState.WITHDRAWN,
        admitted=True,
        origin=origin,
    )


def revision_statement(
    old: ReleaseSummary,
    new: ReleaseSummary,
    removed: list[Removed],
    drop: dict[tuple[str, str], str],
    *,
    federated: bool,
    now: int,
) -> RevisionStatement:
    """The signed account of one revision; it names a removed record only where the policy allows."""
    audience = Audience.FEDERATED if federated else Audience.PUBLIC
    named: list[RemovedRecord] = []
    unnamed = 0
    for item in removed:
        origin, uid = item.key
        own = not federated or origin == old.node_id
        if disclose_tombstone(_facts(item, origin=None if own else origin), _ANY_STATE, audience):
            named.append(RemovedRecord(uid=uid, reason=drop[item.key], origin=origin if federated else None))
        else:
            unnamed += 1
    before = {f.path: f.sha256 for f in old.files if not f.path.startswith(f"{REVISIONS_DIR}/")}
    after = {f.path: f.sha256 for f in new.files}
    changed = tuple(
        ChangedFile(path, before.get(path), after.get(path))
        for path in sorted(before.keys() | after.keys())
        if before.get(path) != after.get(path)
    )
    reasons = sorted({r.reason for r in named}) or [REASONS["withdrawn"]]
    return RevisionStatement(
        release=old.name,
        federated=federated,
        coop=old.coop,
        node_id=old.node_id,
        revision=new.revision,
        previous_revision=old.revision,
        at=now,
        reason="; ".join(reasons),
        removed=tuple(sorted(named, key=lambda r: (r.origin or "", r.uid))),
        unnamed=unnamed,
        files=changed,
    )


def verify_revision(data: bytes, public_key: bytes) -> RevisionStatement:
    """Check a revision statement's signature against the co-op's key and decode it."""
    try:
        envelope, payload = open_envelope(data, payload_type=REVISION_PAYLOAD_TYPE, max_bytes=_MAX_STATEMENT)
    except InvalidValueError as exc:
        raise NodeError(f"not a revision statement: {exc}", field="statement") from None
    if public_key.hex() not in valid_signers(envelope, payload, {public_key.hex(): public_key}):
        raise NodeError("the revision statement is not signed by this key", field="statement")
    try:
        return _STATEMENT.decode(payload)
    except msgspec.DecodeError as exc:
        raise NodeError(f"not a revision statement: {exc}", field="statement") from None
