"""Proposals and votes in the store: open one, vote, and settle it when it passes or its time is up.

A passed proposal applies its changes as a new settings version in the same transaction
as its audit entries.  A *decision* proposal instead carries exactly one decision path
(``joint.sign``, ``access.grant``, ...): the co-op decides an act, not a setting.  Each path is
registered with :func:`register_decision` by the module that owns the act; which setting class's
rule decides it is the kind's to say, and when the proposal passes its ``apply`` runs in the same
transaction as the audit entries.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Final, Protocol

import msgspec

from coop.governance import (
    Choice,
    InvalidValueError,
    PolicyError,
    ProposalStatus,
    SettingClass,
    Signer,
    apply_changes,
    changed_classes,
    decide,
    tally,
)
from coop.node.collective.audit import AuditAction, audit
from coop.node.collective.settings import Actor, current_settings, store_settings
from coop.node.errors import (
    ForbiddenError,
    NodeError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    StateError,
)
from coop.node.members.accounts import Member

__all__ = [
    "MAX_CHANGE_BYTES",
    "MAX_CHANGE_TEXT",
    "MAX_OPENED_PER_DAY",
    "MAX_OPEN_PER_MEMBER",
    "MAX_REASON",
    "DecisionKind",
    "ProposalView",
    "cast_vote",
    "close_expired",
    "get_proposal",
    "list_proposals",
    "open_proposal",
    "register_decision",
    "voted_proposals",
]

_ENCODER: Final = msgspec.json.Encoder(order="sorted")
_DAY: Final = 86_400

# What one member may put before the co-op: every open proposal is shown on the governance
# page and kept in the audit log forever, so its size and their number are bounded.
MAX_REASON: Final = 2000  # characters of the reason members read
MAX_CHANGE_TEXT: Final = 200  # characters of any one text in the changes (a path, a tag, a key)
MAX_CHANGE_BYTES: Final = 8 * 1024  # the changes as stored (canonical JSON)
MAX_OPEN_PER_MEMBER: Final = 5  # proposals of one member open at once
MAX_OPENED_PER_DAY: Final = 10  # proposals one member opens in any 24 hours


class DecisionKind(Protocol):
    """An act the co-op may decide by a proposal (its path's owner implements it)."""

    def classes(self, conn: sqlite3.Connection, value: Any) -> set[SettingClass]:
        """The setting classes whose rules decide it (the strictest of them applies)."""
        ...

    def check(self, conn: sqlite3.Connection, value: Any) -> None:
        """Refuse now what could never be applied (raise a NodeError or InvalidValueError)."""
        ...

    def apply(self, conn: sqlite3.Connection, value: Any, *, at: int, signer: Signer, proposal: int) -> None:
        """Carry the act out: the proposal passed (same transaction as its audit entries)."""
        ...


_DECISIONS: dict[str, DecisionKind] = {}


def register_decision(path: str, kind: DecisionKind) -> None:
    """Make ``path`` a decision: a proposal whose changes are ``{path: value}`` decides that act."""
    _DECISIONS[path] = kind


def _decision(changes: dict[str, Any]) -> tuple[str, DecisionKind] | None:
    """The decision a proposal's changes carry (None for a settings change)."""
    named = [path for path in changes if path in _DECISIONS]
    if not named:
        return None
    if len(changes) != 1:
        raise InvalidValueError(
            f"{named[0]} is a decision of its own: propose it alone, without settings changes",
            field="changes",
        )
    return named[0], _DECISIONS[named[0]]


class ProposalView(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    status: ProposalStatus
    opened_by: str
    opened_at: int
    closes_at: int
    reason: str
    changes: dict[str, Any]
    classes: list[str]
    quorum_percent: int
    threshold_percent: int
    electorate: int
    yes: int
    no: int
    abstain: int
    missing: int
    quorum_needed: int
    decided_at: int | None = None
    settings_version: int | None = None


_PROPOSAL_COLUMNS: Final = (
    "id, status, opened_by, opened_at, closes_at, reason, changes, classes, quorum_percent,"
    " threshold_percent, electorate, decided_at, settings_version"
)


def _proposal(conn: sqlite3.Connection, row: tuple[Any, ...]) -> ProposalView:
    (pid, status, opened_by, opened_at, closes_at, reason, changes, classes, quorum, threshold,
     electorate, decided_at, version) = row  # fmt: skip
    choices = [Choice(c) for (c,) in conn.execute("SELECT choice FROM votes WHERE proposal_id = ?", (pid,))]
    count = tally(choices, electorate=electorate, quorum_percent=quorum, threshold_percent=threshold)
    return ProposalView(
        id=pid,
        status=ProposalStatus(status),
        opened_by=opened_by,
        opened_at=opened_at,
        closes_at=closes_at,
        reason=reason,
        changes=msgspec.json.decode(changes),
        classes=json.loads(classes),
        quorum_percent=quorum,
        threshold_percent=threshold,
        electorate=electorate,
        yes=count.yes,
        no=count.no,
        abstain=count.abstain,
        missing=count.missing,
        quorum_needed=count.quorum_needed,
        decided_at=decided_at,
        settings_version=version,
    )


def get_proposal(conn: sqlite3.Connection, proposal_id: int) -> ProposalView:
    row = conn.execute(f"SELECT {_PROPOSAL_COLUMNS} FROM proposals WHERE id = ?", (proposal_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no proposal {proposal_id}", field="proposal")
    return _proposal(conn, row)


def list_proposals(
    conn: sqlite3.Connection, *, limit: int | None = None, before: int | None = None
) -> list[ProposalView]:
    """Proposals newest first: at most ``limit`` of them, with ids below ``before``."""
    rows = conn.execute(
        f"SELECT {_PROPOSAL_COLUMNS} FROM proposals WHERE id < ? ORDER BY id DESC LIMIT ?",
        (2**63 - 1 if before is None else before, -1 if limit is None else limit),
    ).fetchall()
    return [_proposal(conn, row) for row in rows]


def _check_texts(value: Any, path: str) -> None:
    """Every text in a proposal's changes (keys too) is at most MAX_CHANGE_TEXT characters."""
    if isinstance(value, str) and len(value) > MAX_CHANGE_TEXT:
        raise PayloadTooLargeError(
            f"{path} is {len(value)} characters; a value in a proposal is at most {MAX_CHANGE_TEXT}",
            field=path,
        )
    if isinstance(value, dict):
        for key, item in value.items():
            _check_texts(str(key), path)
            _check_texts(item, f"{path}.{key}" if len(str(key)) <= MAX_CHANGE_TEXT else path)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_texts(item, f"{path}[{index}]")


def _check_size(changes: dict[str, Any], encoded: bytes) -> None:
    for path, value in changes.items():
        if len(path) > MAX_CHANGE_TEXT:
            raise PayloadTooLargeError(
                f"a setting path is at most {MAX_CHANGE_TEXT} characters", field="changes"
            )
        _check_texts(value, path)
    if len(encoded) > MAX_CHANGE_BYTES:
        raise PayloadTooLargeError(
            f"the changes take {len(encoded)} bytes; a proposal holds at most {MAX_CHANGE_BYTES}",
            field="changes",
        )


def _check_pace(conn: sqlite3.Connection, actor: Actor, at: int) -> None:
    """At most MAX_OPEN_PER_MEMBER open and MAX_OPENED_PER_DAY opened a day, per member (429)."""
    closing = [
        closes
        for (closes,) in conn.execute(
            "SELECT closes_at FROM proposals WHERE opened_by = ? AND status = 'open' ORDER BY closes_at",
            (actor.name,),
        )
    ]
    if len(closing) >= MAX_OPEN_PER_MEMBER:
        raise RateLimitedError(
            f"{actor.name} has {len(closing)} proposals open; at most {MAX_OPEN_PER_MEMBER} at once:"
            " wait until one is decided",
            retry_after=max(closing[0] - at, 1),
        )
    opened = [
        when
        for (when,) in conn.execute(
            "SELECT opened_at FROM proposals WHERE opened_by = ? AND opened_at > ? ORDER BY opened_at",
            (actor.name, at - _DAY),
        )
    ]
    if len(opened) >= MAX_OPENED_PER_DAY:
        raise RateLimitedError(
            f"{actor.name} opened {len(opened)} proposals in the last 24 hours; at most"
            f" {MAX_OPENED_PER_DAY} a day",
            retry_after=max(opened[0] + _DAY - at, 1),
        )


def _electorate(conn: sqlite3.Connection, at: int) -> int:
    """Members entitled to vote: local members (with a token) who joined by then; not builders."""
    (n,) = conn.execute(
        "SELECT count(*) FROM members WHERE provider = 'local' AND role != 'builder' AND created_at <= ?",
        (at,),
    ).fetchone()
    return int(n)


def open_proposal(
    conn: sqlite3.Connection,
    *,
    changes: dict[str, Any],
    reason: str,
    actor: Actor,
    at: int,
    signer: Signer,
    voting_days: int | None = None,
) -> ProposalView:
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise InvalidValueError(f"say in 1 to {MAX_REASON} characters why", field="reason")
    encoded = _ENCODER.encode(changes)
    _check_size(changes, encoded)
    current = current_settings(conn).settings
    decision = _decision(changes)
    if decision is None:
        classes = changed_classes(changes)
        apply_changes(current, changes)  # refuse now what could never be applied
    else:
        path, kind = decision
        kind.check(conn, changes[path])
        classes = kind.classes(conn, changes[path])
    rule = current.rules.combined(classes)
    days = rule.voting_days if voting_days is None else voting_days
    if not 1 <= days <= 365:
        raise InvalidValueError("voting lasts 1 to 365 days", field="voting_days")
    if conn.execute("SELECT 1 FROM members WHERE name = ? AND role = 'builder'", (actor.name,)).fetchone():
        raise ForbiddenError(
            f"{actor.name} is a model builder's account: builders do not propose", field="actor"
        )
    _check_pace(conn, actor, at)
    electorate = _electorate(conn, at)
    cur = conn.execute(
        "INSERT INTO proposals (opened_at, closes_at, opened_by, reason, changes, classes, quorum_percent,"
        " threshold_percent, electorate, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open')",
        (
            at,
            at + days * _DAY,
            actor.name,
            reason,
            encoded,
            json.dumps(sorted(c.value for c in classes)),
            rule.quorum_percent,
            rule.threshold_percent,
            electorate,
        ),
    )
    pid = cur.lastrowid
    assert pid is not None
    audit(
        conn,
        signer=signer,
        at=at,
        actor=actor.name,
        action=AuditAction.PROPOSAL_OPEN,
        payload={
            "proposal": pid,
            "changes": changes,
            "reason": reason,
            "closes_at": at + days * _DAY,
            "electorate": electorate,
            "quorum_percent": rule.quorum_percent,
            "threshold_percent": rule.threshold_percent,
        },
    )
    return get_proposal(conn, pid)


def _settle(conn: sqlite3.Connection, view: ProposalView, *, at: int, signer: Signer) -> ProposalView:
    """Apply a proposal that has passed, or close one whose time is up."""
    count = tally(
        [Choice.YES] * view.yes + [Choice.NO] * view.no + [Choice.ABSTAIN] * view.abstain,
        electorate=view.electorate,
        quorum_percent=view.quorum_percent,
        threshold_percent=view.threshold_percent,
    )
    status = decide(count, now=at, closes_at=view.closes_at)
    if status is ProposalStatus.OPEN:
        return view
    version = None
    counts = {"yes": count.yes, "no": count.no, "abstain": count.abstain, "electorate": count.electorate}
    decision = _decision(view.changes) if status is ProposalStatus.PASSED else None
    if decision is not None:
        path, kind = decision
        audit(
            conn,
            signer=signer,
            at=at,
            actor=f"proposal {view.id}",
            action=AuditAction.PROPOSAL_PASSED,
            payload={"proposal": view.id, **counts},
        )
        try:
            kind.apply(conn, view.changes[path], at=at, signer=signer, proposal=view.id)
        except (NodeError, InvalidValueError, PolicyError) as exc:
            # The act became impossible while the vote ran (an action ended, a request was
            # withdrawn): the vote still counts; the log says why nothing was done.
            audit(
                conn,
                signer=signer,
                at=at,
                actor=f"proposal {view.id}",
                action=AuditAction.DECISION_NOT_APPLIED,
                payload={"proposal": view.id, "path": path, "reason": str(exc)},
            )
    elif status is ProposalStatus.PASSED:
        current = current_settings(conn)
        updated = apply_changes(current.settings, view.changes)
        via = f"proposal {view.id}"
        settings = store_settings(conn, updated, at=at, actor=view.opened_by, via=via)
        version = settings.version
        audit(
            conn,
            signer=signer,
            at=at,
            actor=f"proposal {view.id}",
            action=AuditAction.PROPOSAL_PASSED,
            payload={"proposal": view.id, **counts},
        )
        audit(
            conn,
            signer=signer,
            at=at,
            actor=f"proposal {view.id}",
            action=AuditAction.SETTINGS_CHANGE,
            payload={"version": version, "digest": settings.digest, "changes": view.changes, "via": via},
        )
    else:
        audit(
            conn,
            signer=signer,
            at=at,
            actor=f"proposal {view.id}",
            action=AuditAction.PROPOSAL_EXPIRED,
            payload={"proposal": view.id, **counts},
        )
    conn.execute(
        "UPDATE proposals SET status = ?, decided_at = ?, settings_version = ? WHERE id = ?",
        (status.value, at, version, view.id),
    )
    return get_proposal(conn, view.id)


def cast_vote(
    conn: sqlite3.Connection, *, proposal_id: int, member: Member, choice: Choice, at: int, signer: Signer
) -> ProposalView:
    view = get_proposal(conn, proposal_id)
    if view.status is ProposalStatus.OPEN and at >= view.closes_at:
        # Close it first (in its own transaction: see Node.vote); a vote now is too late.
        raise StateError(f"voting on proposal {proposal_id} has closed (its time is up)", field="proposal")
    if view.status is not ProposalStatus.OPEN:
        raise StateError(
            f"voting on proposal {proposal_id} has closed ({view.status.value})", field="proposal"
        )
    row = conn.execute("SELECT provider, created_at, role FROM members WHERE id = ?", (member.id,)).fetchone()
    if row is not None and row[2] == "builder":
        raise ForbiddenError(
            f"{member.name} is a model builder's account: builders do not vote", field="voter"
        )
    if row is None or row[0] != "local" or row[1] > view.opened_at:
        raise ForbiddenError(
            f"{member.name} is not entitled to vote on proposal {proposal_id} (members when it opened)",
            field="voter",
        )
    if conn.execute(
        "SELECT 1 FROM votes WHERE proposal_id = ? AND member_id = ?", (proposal_id, member.id)
    ).fetchone():
        raise StateError(f"{member.name} has already voted on proposal {proposal_id}", field="voter")
    conn.execute(
        "INSERT INTO votes (proposal_id, member_id, choice, at) VALUES (?, ?, ?, ?)",
        (proposal_id, member.id, choice.value, at),
    )
    audit(
        conn,
        signer=signer,
        at=at,
        actor=member.name,
        action=AuditAction.VOTE_CAST,
        payload={"proposal": proposal_id, "choice": choice.value},
    )
    return _settle(conn, get_proposal(conn, proposal_id), at=at, signer=signer)


def close_expired(conn: sqlite3.Connection, *, at: int, signer: Signer) -> list[int]:
    """Close every open proposal whose voting time has ended; returns their ids."""
    rows = conn.execute(
        f"SELECT {_PROPOSAL_COLUMNS} FROM proposals WHERE status = 'open' AND closes_at <= ? ORDER BY id",
        (at,),
    ).fetchall()
    closed = []
    for row in rows:
        _settle(conn, _proposal(conn, row), at=at, signer=signer)
        closed.append(int(row[0]))
    return closed


def voted_proposals(conn: sqlite3.Connection, member_id: int) -> set[int]:
    """The proposals ``member_id`` has voted on (the governance page shows their vote as cast)."""
    return {
        int(row[0]) for row in conn.execute("SELECT proposal_id FROM votes WHERE member_id = ?", (member_id,))
    }
