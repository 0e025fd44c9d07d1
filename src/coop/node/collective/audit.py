"""The audit chain in the store: append a signed entry, read entries back, verify the chain.

Every change that takes effect is appended in the same transaction as the change, so the
log cannot miss an action, nor record one that did not happen.  :class:`AuditAction` names
every action the node records; its values are the strings stored in (and hashed into)
existing chains, so they never change.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Iterator
from typing import Any, Final

import msgspec

from coop.governance import (
    AuditEntry,
    ChainReport,
    SettingClass,
    Signer,
    append_entry,
    changed_classes,
    verify_chain,
)
from coop.governance.audit import AuditHead

__all__ = [
    "AuditAction",
    "audit",
    "audit_entries",
    "audit_head",
    "last_changes",
    "recent_entries",
    "verify_audit",
]

_ENCODER: Final = msgspec.json.Encoder(order="sorted")


class AuditAction(enum.StrEnum):
    """Every action the audit log records (``area.verb``), by its stored string."""

    SETTINGS_INIT = "settings.init"
    SETTINGS_CHANGE = "settings.change"
    CONFIG_MOVED = "config.moved"  # keys that moved out of node.toml, read once at an upgrade
    PROPOSAL_OPEN = "proposal.open"
    PROPOSAL_PASSED = "proposal.passed"
    PROPOSAL_EXPIRED = "proposal.expired"
    DECISION_NOT_APPLIED = "decision.unapplied"  # a passed decision proposal whose act was impossible
    VOTE_CAST = "vote.cast"
    PAYOUT_COMPUTED = "payout.computed"
    PAYOUT_SUPERSEDE = "payout.supersede"
    RELEASE_CUT = "release.cut"
    RELEASE_REVISE = "release.revise"
    RELEASE_PUBLISH = "release.publish"
    RELEASE_MERGED = "release.merged"  # a release offered for review was merged into the target's branch
    RELEASE_CLOSED = "release.closed"  # a release offered for review was closed without a merge
    QUARANTINE_RELEASE = "quarantine.release"
    QUARANTINE_REJECT = "quarantine.reject"
    MEMBER_ADD = "member.add"
    MEMBER_TOKEN = "member.token"  # noqa: S105 (an action name, not a secret)
    MEMBER_REVOKE = "member.revoke"
    INTEGRATION_ADD = "integration.add"
    INTEGRATION_REVOKE = "integration.revoke"
    PEER_ADD = "peer.add"
    PEER_REMOVE = "peer.remove"
    IDENTITY_ROTATE = "identity.rotate"
    EVAL_ANSWER = "eval.answer"
    EVAL_APPROVED = "eval.approved"
    EVAL_REFUSED = "eval.refused"
    EVAL_PUBLISHED = "eval.published"  # an admin published a signed eval report
    EVAL_UNPUBLISHED = "eval.unpublished"
    ROSTER_CREATE = "roster.create"  # this co-op founded a federation (roster version 1)
    ROSTER_JOIN = "roster.join"  # a roster version trusted out of band (the root of trust)
    ROSTER_PROPOSE = "roster.propose"  # a change to the roster proposed (and signed) here
    ROSTER_SIGN = "roster.sign"  # this co-op signed a pending proposal
    ROSTER_ADOPT = "roster.adopt"  # a new roster version became trusted here
    JOINT_PROPOSE = "joint.propose"  # this co-op proposed (and signed) a joint action
    JOINT_SIGN = "joint.sign"  # this co-op signed a joint action (via an admin or a vote)
    JOINT_END = "joint.end"  # this co-op signed the end of a joint action it had signed
    JOINT_RECEIVE = "joint.receive"  # a joint action naming this co-op first came by gossip
    JOINT_EFFECTIVE = "joint.effective"  # a joint action this co-op signed first binds it, as seen here
    JOINT_ENDED = "joint.ended"  # a joint action that bound this co-op ended or expired, as seen here
    ACCESS_REQUEST = "access.request"  # a model builder asked for access to gated buckets
    ACCESS_APPROVE = "access.approve"  # a request granted (by an admin, or by a vote that passed)
    ACCESS_REFUSE = "access.refuse"  # a request refused by an admin
    ACCESS_REVOKE = "access.revoke"  # a grant ended early: its signed URLs stop working
    RECORD_HIGHLIGHT = "record.highlight"  # an admin highlighted a released record (feed, microblog)
    RECORD_UNHIGHLIGHT = "record.unhighlight"  # an admin removed a record's highlight


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    seq, at, actor, action, payload, prev, digest, signature = row
    return AuditEntry(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        payload=msgspec.json.decode(payload),
        prev=prev,
        hash=digest,
        signature=signature,
    )


_AUDIT_COLUMNS: Final = "seq, at, actor, action, payload, prev, hash, signature"


def audit_head(conn: sqlite3.Connection) -> AuditEntry | None:
    row = conn.execute(f"SELECT {_AUDIT_COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return None if row is None else _entry(row)


def audit(
    conn: sqlite3.Connection, *, signer: Signer, at: int, actor: str, action: AuditAction, payload: Any
) -> AuditEntry:
    """Append a signed entry (call inside the transaction of the change it records)."""
    entry = append_entry(audit_head(conn), at=at, actor=actor, action=action, payload=payload, signer=signer)
    conn.execute(
        f"INSERT INTO audit_log ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            entry.seq,
            entry.at,
            entry.actor,
            entry.action,
            _ENCODER.encode(entry.payload),
            entry.prev,
            entry.hash,
            entry.signature,
        ),
    )
    return entry


def audit_entries(conn: sqlite3.Connection, *, after: int = 0, limit: int | None = None) -> list[AuditEntry]:
    rows = conn.execute(
        f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
        (after, -1 if limit is None else limit),
    ).fetchall()
    return [_entry(row) for row in rows]


def recent_entries(conn: sqlite3.Connection, *, limit: int = 20) -> list[AuditEntry]:
    """The newest entries first (what the admin page shows)."""
    rows = conn.execute(
        f"SELECT {_AUDIT_COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT ?", (limit,)
    ).fetchall()
    return [_entry(row) for row in rows]


def last_changes(conn: sqlite3.Connection, *, scan: int = 2000) -> dict[str, AuditEntry]:
    """For each setting class, the latest audited change to it: who flipped it, when and how."""
    found: dict[str, AuditEntry] = {}
    rows = conn.execute(
        f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE action IN (?, ?) ORDER BY seq DESC LIMIT ?",
        (AuditAction.SETTINGS_CHANGE.value, AuditAction.SETTINGS_INIT.value, scan),
    )
    for row in rows:
        entry = _entry(row)
        changes = entry.payload.get("changes") if isinstance(entry.payload, dict) else None
        classes = (
            [c.value for c in SettingClass]
            if entry.action == AuditAction.SETTINGS_INIT or not isinstance(changes, dict)
            else [c.value for c in changed_classes(changes)]
        )
        for name in classes:
            found.setdefault(name, entry)
        if len(found) == len(SettingClass):
            break
    return found


def _iter_entries(conn: sqlite3.Connection) -> Iterator[AuditEntry]:
    # ORDER BY rowid, not seq: a reordered table must show up as reordered.
    for row in conn.execute(f"SELECT {_AUDIT_COLUMNS} FROM audit_log ORDER BY rowid"):
        yield _entry(row)


def verify_audit(
    conn: sqlite3.Connection,
    public_key: bytes,
    *,
    head: AuditHead | None = None,
    current_key: bytes | None = None,
) -> ChainReport:
    """The chain from ``public_key`` on, against the signed ``head`` (its absence is a warning)."""
    return verify_chain(_iter_entries(conn), public_key, head=head, expect_head=True, current_key=current_key)
