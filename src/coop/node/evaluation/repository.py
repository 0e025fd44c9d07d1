"""Evaluation requests, answers and privacy budgets in the node's database (all their SQL).

``eval_requests`` keeps every verified request received (and an admin's decision),
``eval_answers`` what this node answered or why it declined, ``eval_budget`` the
privacy budget each requester has spent.  Every function runs in the caller's
transaction or snapshot.
"""

from __future__ import annotations

import sqlite3
from typing import Final

import msgspec

from coop.eval import VerifiedRequest, budget_left
from coop.eval.request import REQUEST_TYPE
from coop.governance import GovernanceError
from coop.governance.envelope import open_envelope
from coop.node.errors import NotFoundError, StateError

__all__ = [
    "EvalRequestView",
    "decide_request",
    "eligible_rows",
    "list_requests",
    "record_answer",
    "remember_request",
    "request_state",
    "request_status",
    "spend_budget",
    "spent_budget",
]


class EvalRequestView(msgspec.Struct, frozen=True):
    hash: str
    requester: str
    task: str
    purpose: str
    model_sha256: str
    received_at: int
    status: str  # the admin's decision: pending, approved or refused
    decided_by: str | None
    # Where the request stands: answered, declined (``reason`` says why), refused, expired,
    # pending (an admin's approval) or approved (waiting for the requester to run it again).
    state: str = "pending"
    reason: str | None = None
    answered_at: int | None = None
    records: int | None = None
    expires_at: int | None = None


# A decline that only waits for the admin: the request's state is then the admin's decision.
_AWAITING: Final = "awaiting_admin_approval"


def _expires_at(envelope: bytes) -> int | None:
    """When a stored request expires, from its own (already verified) envelope."""
    try:
        _, payload = open_envelope(envelope, payload_type=REQUEST_TYPE, max_bytes=len(envelope))
        return _EXPIRY.decode(payload).expires_at
    except (GovernanceError, msgspec.DecodeError):
        return None


class _Expiry(msgspec.Struct):
    expires_at: int


_EXPIRY: Final = msgspec.json.Decoder(_Expiry)


def request_state(
    status: str, outcome: str | None, expires_at: int | None, *, now: int
) -> tuple[str, str | None]:
    """(state, reason) of a request from the admin's decision, its last answer and the clock."""
    if outcome == "answered":
        return "answered", None
    if outcome is not None and outcome != _AWAITING:
        return "declined", outcome
    if status == "refused":
        return "refused", None
    if expires_at is not None and now >= expires_at:
        return "expired", None
    return status, None


def remember_request(conn: sqlite3.Connection, verified: VerifiedRequest, now: int) -> None:
    """Keep a verified request (pending an admin's decision), once."""
    request = verified.request
    conn.execute(
        "INSERT OR IGNORE INTO eval_requests (hash, requester, task, purpose, model_sha256, envelope,"
        " received_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')",
        (verified.hash, request.requester, request.task, request.purpose, request.model_sha256,
         verified.envelope, now),
    )  # fmt: skip


def request_status(conn: sqlite3.Connection, digest: str) -> str | None:
    """``pending``, ``approved`` or ``refused``; None for a request never received."""
    row = conn.execute("SELECT status FROM eval_requests WHERE hash = ?", (digest,)).fetchone()
    return None if row is None else str(row[0])


def spent_budget(conn: sqlite3.Connection, requester: str) -> int:
    """The privacy budget (milli-epsilon) this requester has spent here."""
    row = conn.execute("SELECT spent_milli FROM eval_budget WHERE requester = ?", (requester,)).fetchone()
    return 0 if row is None else int(row[0])


def spend_budget(conn: sqlite3.Connection, requester: str, *, cost: int, budget: int) -> bool:
    """Spend ``cost`` of the requester's budget if it is left (False, nothing spent, if not).

    Checked again in the transaction that spends it: two answers racing for the last of a
    budget cannot both pass.
    """
    if not budget_left(budget, spent_budget(conn, requester), cost):
        return False
    conn.execute(
        "INSERT INTO eval_budget (requester, spent_milli) VALUES (?, ?)"
        " ON CONFLICT (requester) DO UPDATE SET spent_milli = spent_milli + excluded.spent_milli",
        (requester, cost),
    )
    return True


def record_answer(
    conn: sqlite3.Connection, digest: str, *, at: int, outcome: str, records: int, detail: str | None
) -> None:
    """What this node answered to a request (``answered``) or why it declined."""
    conn.execute(
        "INSERT INTO eval_answers (request_hash, at, outcome, records, detail) VALUES (?, ?, ?, ?, ?)",
        (digest, at, outcome, records, detail),
    )


def eligible_rows(conn: sqlite3.Connection) -> list[tuple[bytes | None, str]]:
    """(record bytes, state) of every accepted or released record with eval consent ``y``.

    The disclosure policy decides on each (withdrawal, embargo, freeze), and the request's
    filters after it.
    """
    rows: list[tuple[bytes | None, str]] = conn.execute(
        "SELECT t.record, c.state FROM contributions c JOIN contents t ON t.seq = c.seq"
        " WHERE c.state IN ('accepted', 'released') AND c.eval = 'y' ORDER BY c.seq"
    ).fetchall()
    return rows


def list_requests(conn: sqlite3.Connection, *, now: int) -> list[EvalRequestView]:
    """Every request received, newest first, with where it stands (its last answer, expiry)."""
    rows = conn.execute(
        "SELECT r.hash, r.requester, r.task, r.purpose, r.model_sha256, r.received_at, r.status,"
        " r.decided_by, r.envelope, a.outcome, a.at, a.records"
        " FROM eval_requests r LEFT JOIN eval_answers a ON a.id = ("
        "  SELECT max(id) FROM eval_answers WHERE request_hash = r.hash)"
        " ORDER BY r.received_at DESC"
    ).fetchall()
    views = []
    for digest, requester, task, purpose, model, received, status, decided, envelope, outcome, at, n in rows:
        expires_at = _expires_at(bytes(envelope))
        state, reason = request_state(status, outcome, expires_at, now=now)
        answered = outcome == "answered"
        views.append(
            EvalRequestView(
                hash=digest,
                requester=requester,
                task=task,
                purpose=purpose,
                model_sha256=model,
                received_at=received,
                status=status,
                decided_by=decided,
                state=state,
                reason=reason,
                answered_at=at if answered else None,
                records=n if answered else None,
                expires_at=expires_at,
            )
        )
    return views


def decide_request(conn: sqlite3.Connection, digest: str, *, approve: bool, admin: str) -> str:
    """An admin approves or refuses a pending request; returns its new status."""
    status = request_status(conn, digest)
    if status is None:
        raise NotFoundError(f"no evaluation request {digest}", field="hash")
    if status != "pending":
        raise StateError(f"request {digest[:16]} was already {status}", field="hash")
    decided = "approved" if approve else "refused"
    conn.execute(
        "UPDATE eval_requests SET status = ?, decided_by = ? WHERE hash = ?", (decided, admin, digest)
    )
    return decided
