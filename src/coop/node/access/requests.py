"""Access requests to gated buckets: ask, approve (alone or by a vote), refuse, revoke.

A model builder (or a member) asks, stating who they are, the purpose and the model (open
weights or not), names the gated buckets (licences) and accepts the co-op's terms; the
digest of the terms they accepted is kept with the request.  An admin decides: where the
co-op's rule for the ``access`` setting class lets an admin act alone, approval grants now;
otherwise it opens a vote (the decision path ``access.grant``) and the grant follows when
the vote passes.  Every step is in the audit log; the log names the request, the buckets,
the model and the terms digest, never the free text a builder typed (it may hold names) --
except where the co-op decides by a vote: the members cannot vote blind, so the proposal's
reason (public on the governance page, and in the log with the proposal) quotes who asks and
why, and the /access form tells the builder so before they send the request.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Final

import msgspec

from coop.governance import InvalidValueError, ProposalStatus, SettingClass, Settings, Signer
from coop.governance.canonical import canonical_bytes, sha256_hex
from coop.governance.settings import Access
from coop.node.collective.audit import AuditAction, audit
from coop.node.collective.proposals import ProposalView, get_proposal, open_proposal, register_decision
from coop.node.collective.settings import Actor, current_settings
from coop.node.errors import ConflictError, ForbiddenError, InputError, NotFoundError, StateError
from coop.node.members.accounts import Member

__all__ = [
    "DECISION_PATH",
    "MAX_OPEN_REQUESTS",
    "RequestView",
    "approve",
    "get_request",
    "list_requests",
    "proposal_of",
    "refuse",
    "request_access",
    "revoke",
    "terms_digest",
    "usable_grant",
    "vote_reason",
]

DECISION_PATH: Final = "access.grant"
MAX_OPEN_REQUESTS: Final = 5  # undecided requests of one account at once
_DAY: Final = 86_400
_LIMITS: Final = {"who": 500, "purpose": 2000, "model": 200}
_SHOWN: Final = 300  # characters of who / purpose / model a vote's reason quotes


_COLUMNS: Final = (
    "r.id, r.member_id, m.name, r.who, r.purpose, r.model, r.open_weights, r.buckets, r.terms_digest,"
    " r.state, r.requested_at, r.decided_at, r.decided_by, r.proposal_id, r.expires_at, r.revoked_at, r.revoked_by"
)


class RequestView(msgspec.Struct, frozen=True, kw_only=True):
    """A request as its builder and the admins see it.

    ``state``: ``pending`` (an admin has to decide), ``voting`` (a vote is open),
    ``approved`` (a grant in force until ``expires_at``), ``expired``, ``refused`` (by an
    admin or a vote), ``revoked``.  ``usable``: the grant serves files now.
    """

    id: int
    member_id: int
    member: str  # the account's handle
    who: str
    purpose: str
    model: str
    open_weights: bool
    buckets: tuple[str, ...]
    terms_digest: str
    state: str
    requested_at: int
    decided_at: int | None = None
    decided_by: str | None = None
    proposal_id: int | None = None
    expires_at: int | None = None
    revoked_at: int | None = None
    revoked_by: str | None = None  # the admin who ended the grant (decided_by approved it)
    usable: bool = False


def terms_digest(access: Access) -> str:
    """What a builder accepts: the terms and the co-op's conditions (sha256 of canonical JSON)."""
    return sha256_hex(canonical_bytes({"terms": list(access.terms), "conditions": list(access.conditions)}))


def _view(conn: sqlite3.Connection, row: tuple[Any, ...], now: int) -> RequestView:
    (rid, member_id, member, who, purpose, model, open_weights, buckets, digest, state, requested_at,
     decided_at, decided_by, proposal_id, expires_at, revoked_at, revoked_by) = row  # fmt: skip
    if state == "voting" and proposal_id is not None:
        status = conn.execute("SELECT status FROM proposals WHERE id = ?", (proposal_id,)).fetchone()
        if status is not None and status[0] not in (ProposalStatus.OPEN.value, ProposalStatus.PASSED.value):
            state = "refused"  # the vote did not pass
    if state == "approved" and expires_at is not None and expires_at <= now:
        state = "expired"
    return RequestView(
        id=rid,
        member_id=member_id,
        member=member,
        who=who,
        purpose=purpose,
        model=model,
        open_weights=bool(open_weights),
        buckets=tuple(json.loads(buckets)),
        terms_digest=digest,
        state=state,
        requested_at=requested_at,
        decided_at=decided_at,
        decided_by=decided_by,
        proposal_id=proposal_id,
        expires_at=expires_at,
        revoked_at=revoked_at,
        revoked_by=revoked_by,
        usable=state == "approved",
    )


def get_request(conn: sqlite3.Connection, request_id: int, *, now: int) -> RequestView:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM access_requests r JOIN members m ON m.id = r.member_id WHERE r.id = ?",
        (request_id,),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no access request {request_id}", field="request")
    return _view(conn, row, now)


def list_requests(conn: sqlite3.Connection, *, now: int, member_id: int | None = None) -> list[RequestView]:
    """Requests newest first: everyone's (admins), or one account's."""
    where, params = ("WHERE r.member_id = ?", (member_id,)) if member_id is not None else ("", ())
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM access_requests r JOIN members m ON m.id = r.member_id {where}"
        " ORDER BY r.id DESC LIMIT 1000",
        params,
    ).fetchall()
    return [_view(conn, row, now) for row in rows]


def _text(value: str, name: str) -> str:
    text = " ".join(str(value).split())
    if not text or len(text) > _LIMITS[name] or not text.isprintable():
        raise InputError(f"say in 1 to {_LIMITS[name]} printable characters {name}", field=name)
    return text


def request_access(
    conn: sqlite3.Connection,
    *,
    member: Member,
    who: str,
    purpose: str,
    model: str,
    open_weights: bool,
    buckets: tuple[str, ...] | list[str],
    accept_terms: bool,
    at: int,
    signer: Signer,
) -> RequestView:
    """Record a request (``pending``) against the co-op's current terms."""
    if accept_terms is not True:
        raise InputError("read and accept the co-op's terms", field="accept_terms")
    access = current_settings(conn).settings.access
    fields = {"who": _text(who, "who"), "purpose": _text(purpose, "purpose"), "model": _text(model, "model")}
    if access.open_weights_only and not open_weights:
        raise ForbiddenError(
            "this co-op grants access only for models whose weights are published (open weights)",
            field="open_weights",
        )
    asked = sorted(set(buckets))
    if not asked:
        raise InputError("name at least one gated bucket", field="buckets")
    for bucket in asked:
        if bucket not in access.gated:
            gated = ", ".join(access.gated) or "none"
            raise InputError(f"{bucket[:80]!r} is not a gated bucket here (gated: {gated})", field="buckets")
    (undecided,) = conn.execute(
        "SELECT count(*) FROM access_requests WHERE member_id = ? AND (state = 'pending' OR (state = 'voting'"
        " AND proposal_id IN (SELECT id FROM proposals WHERE status = 'open')))",
        (member.id,),
    ).fetchone()
    if undecided >= MAX_OPEN_REQUESTS:
        raise ConflictError(
            f"{member.name} has {undecided} requests waiting; at most {MAX_OPEN_REQUESTS}", field="request"
        )
    digest = terms_digest(access)
    cur = conn.execute(
        "INSERT INTO access_requests (member_id, who, purpose, model, open_weights, buckets, terms_digest,"
        " state, requested_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
        (member.id, fields["who"], fields["purpose"], fields["model"], int(open_weights), json.dumps(asked),
         digest, at),
    )  # fmt: skip
    rid = cur.lastrowid
    assert rid is not None
    audit(
        conn,
        signer=signer,
        at=at,
        actor=member.name,
        action=AuditAction.ACCESS_REQUEST,
        payload={
            "request": rid,
            "buckets": asked,
            "model": fields["model"],
            "open_weights": bool(open_weights),
            "terms_digest": digest,
        },
    )
    return get_request(conn, rid, now=at)


def _clip(text: str, limit: int) -> str:
    text = text.rstrip(".")  # the reason puts its own full stop
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def vote_reason(view: RequestView, *, days: int) -> str:
    """What the members who vote read: who asks and why (each cut to ~300 characters), the
    model, whether its weights are published, the buckets and how long.  A builder who asks a
    co-op that decides by vote is told so on the form (their words go to the proposal)."""
    weights = "open weights" if view.open_weights else "weights not published"
    return (
        f"Grant access request {view.id} to {', '.join(view.buckets)} for {days} days."
        f" Who asks: {_clip(view.who, _SHOWN)}."
        f" Purpose: {_clip(view.purpose, _SHOWN)}."
        f" Model: {_clip(view.model, _SHOWN)} ({weights})."
    )


def _undecided(conn: sqlite3.Connection, request_id: int, *, now: int) -> RequestView:
    view = get_request(conn, request_id, now=now)
    if view.state == "voting" and view.proposal_id is not None:
        raise StateError(
            f"access request {request_id} is put to a vote: proposal {view.proposal_id} is open:"
            " the members decide",
            field="request",
        )
    if view.state != "pending":
        raise StateError(f"access request {request_id} is {view.state}", field="request")
    return view


def _grant(conn: sqlite3.Connection, view: RequestView, *, by: str, at: int, signer: Signer) -> RequestView:
    settings = current_settings(conn).settings
    expires = at + settings.access.grant_days * _DAY
    conn.execute(
        "UPDATE access_requests SET state = 'approved', decided_at = ?, decided_by = ?, expires_at = ?"
        " WHERE id = ?",
        (at, by, expires, view.id),
    )
    audit(
        conn,
        signer=signer,
        at=at,
        actor=by,
        action=AuditAction.ACCESS_APPROVE,
        payload={"request": view.id, "buckets": list(view.buckets), "expires_at": expires, "by": by},
    )
    return get_request(conn, view.id, now=at)


def approve(
    conn: sqlite3.Connection, request_id: int, *, actor: Actor, at: int, signer: Signer
) -> tuple[RequestView, ProposalView | None]:
    """Grant now where the ACCESS rule lets an admin act alone; else open the vote."""
    if not actor.admin:
        raise ForbiddenError("only the co-op's admins decide access requests", field="Authorization")
    view = _undecided(conn, request_id, now=at)
    settings: Settings = current_settings(conn).settings
    if settings.rules.rule(SettingClass.ACCESS).admin_alone:
        return _grant(conn, view, by=actor.name, at=at, signer=signer), None
    proposal = open_proposal(
        conn,
        changes={DECISION_PATH: view.id},
        reason=vote_reason(view, days=settings.access.grant_days),
        actor=actor,
        at=at,
        signer=signer,
    )
    conn.execute(
        "UPDATE access_requests SET state = 'voting', proposal_id = ? WHERE id = ?", (proposal.id, view.id)
    )
    return get_request(conn, view.id, now=at), proposal


def refuse(
    conn: sqlite3.Connection, request_id: int, *, actor: Actor, at: int, signer: Signer
) -> RequestView:
    """An admin says no to a request waiting for an admin (a vote, once open, decides)."""
    if not actor.admin:
        raise ForbiddenError("only the co-op's admins decide access requests", field="Authorization")
    view = _undecided(conn, request_id, now=at)
    conn.execute(
        "UPDATE access_requests SET state = 'refused', decided_at = ?, decided_by = ? WHERE id = ?",
        (at, actor.name, view.id),
    )
    audit(conn, signer=signer, at=at, actor=actor.name, action=AuditAction.ACCESS_REFUSE,
          payload={"request": view.id})  # fmt: skip
    return get_request(conn, view.id, now=at)


def revoke(
    conn: sqlite3.Connection, request_id: int, *, actor: Actor, at: int, signer: Signer
) -> RequestView:
    """End a grant now: its signed URLs stop working at once."""
    if not actor.admin:
        raise ForbiddenError("only the co-op's admins revoke access", field="Authorization")
    view = get_request(conn, request_id, now=at)
    if view.state != "approved":
        raise StateError(f"access request {request_id} is {view.state}: only a grant in force is revoked",
                         field="request")  # fmt: skip
    conn.execute(
        "UPDATE access_requests SET state = 'revoked', revoked_at = ?, revoked_by = ? WHERE id = ?",
        (at, actor.name, view.id),
    )
    audit(conn, signer=signer, at=at, actor=actor.name, action=AuditAction.ACCESS_REVOKE,
          payload={"request": view.id})  # fmt: skip
    return get_request(conn, view.id, now=at)


def usable_grant(conn: sqlite3.Connection, request_id: int, member_id: int, *, now: int) -> RequestView:
    """The grant ``request_id`` of ``member_id``, in force now: 403 otherwise (404 is not said)."""
    try:
        view = get_request(conn, request_id, now=now)
    except NotFoundError:
        view = None
    if view is None or view.member_id != member_id:
        raise ForbiddenError(f"you hold no grant {request_id}", field="grant")
    if not view.usable:
        raise ForbiddenError(f"grant {request_id} is {view.state}: ask again at /access", field="grant")
    return view


class _Grant:
    """``access.grant``: the co-op decides by a vote to grant a request (the ACCESS rule)."""

    def classes(self, conn: sqlite3.Connection, value: Any) -> set[SettingClass]:
        del conn, value
        return {SettingClass.ACCESS}

    def check(self, conn: sqlite3.Connection, value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidValueError("an access request's number", field=DECISION_PATH)
        found = conn.execute("SELECT state FROM access_requests WHERE id = ?", (value,)).fetchone()
        if found is None:
            raise NotFoundError(f"no access request {value}", field=DECISION_PATH)
        if found[0] != "pending":
            raise StateError(f"access request {value} is {found[0]}", field=DECISION_PATH)

    def apply(self, conn: sqlite3.Connection, value: Any, *, at: int, signer: Signer, proposal: int) -> None:
        view = get_request(conn, int(value), now=at)
        # A member may propose a grant too (the request then waits as pending); an admin's
        # approval that opened a vote names it.
        if not (view.state == "pending" or (view.state == "voting" and view.proposal_id == proposal)):
            raise StateError(f"access request {value} is {view.state}", field=DECISION_PATH)
        _grant(conn, view, by=f"proposal {proposal}", at=at, signer=signer)


register_decision(DECISION_PATH, _Grant())


def proposal_of(conn: sqlite3.Connection, view: RequestView) -> ProposalView | None:
    return get_proposal(conn, view.proposal_id) if view.proposal_id is not None else None
