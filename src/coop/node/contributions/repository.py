"""Contributions in the store: intake, the member's rights, admin review, the pipeline's steps.

Each public function here is one transaction's worth of work on a
connection (run it through the store's writer), or one read.  State changes
check the state they expect, so a withdrawal racing the processor wins
cleanly: the processor's result for a row it no longer holds is dropped.
"""

from __future__ import annotations

import enum
import json
import sqlite3
from collections.abc import Iterator
from typing import Final

import msgspec

from coop.governance import (
    AttributionMode,
    Audience,
    CollectiveState,
    Disclosure,
    EvalConsent,
    License,
    Record,
    RecordFacts,
    RecordState,
    Scope,
    disclose,
)
from coop.node.contributions.pipeline import Accepted, Outcome, Quarantined, redacted_submission
from coop.node.contributions.submission import ContributionState, Submission
from coop.node.errors import ConflictError, InputError, NotFoundError, StateError
from coop.node.members.accounts import Member
from coop.node.members.attribution import Contributor, settle
from coop.node.releases.catalog import unindex
from coop.node.storage.store import next_tick
from coop.node.storage.writer import scrub_after_commit

__all__ = [
    "BatchReport",
    "Claimed",
    "ClientInfo",
    "ContributionDetail",
    "ContributionView",
    "Decision",
    "Idempotency",
    "InsertResult",
    "NewContribution",
    "Stage",
    "bump_stage",
    "claim_batch",
    "current_submission",
    "decide_quarantine",
    "edit_contribution",
    "finish_batch",
    "get_contribution",
    "insert_contribution",
    "insert_contributions",
    "iter_member_records",
    "list_by_state",
    "list_member_contributions",
    "quarantined_entry",
    "recover_claims",
    "withdraw_contribution",
]

S = ContributionState
_SUBMISSION_ENCODER: Final = msgspec.json.Encoder()
_SUBMISSION_DECODER: Final = msgspec.json.Decoder(Submission)
_RECORD_DECODER: Final = msgspec.json.Decoder(Record)
_DAY: Final = 86_400


class Stage(enum.StrEnum):
    """Stages of the record-generation model, counted per intake channel and day."""

    ELIGIBLE = "eligible"  # E: chats an integration could have offered
    CAPTURED = "captured"  # C: chats that reached the node
    PROMPT_SHOWN = "prompt_shown"  # S: share prompts shown to members
    CONSENT = "consent"  # A: contributions made with consent
    TRANSFORM_OK = "transform_ok"  # T: accepted by processing
    PUBLISHED = "published"  # P: first published in a release


class Decision(enum.StrEnum):
    RELEASE = "release"
    REJECT = "reject"


class Idempotency(msgspec.Struct, frozen=True):
    scope: str
    key: str
    request_sha256: str


class ClientInfo(msgspec.Struct, frozen=True):
    """Security data kept for rate limiting and abuse handling, purged after retention."""

    ip: str | None
    user_agent: str | None


class InsertResult(msgspec.Struct, frozen=True):
    uid: str
    created: bool
    state: ContributionState


class ContributionView(msgspec.Struct, frozen=True, kw_only=True):
    """What a member (or an admin) sees of one contribution."""

    uid: str
    state: ContributionState
    channel: str
    label: str
    license: str
    ai_use: str
    scope: str
    eval: str
    language: str | None
    tags: list[str]
    created_at: int
    updated_at: int
    released_in: str | None = None
    reason: str | None = None
    pii: dict[str, int] = msgspec.field(default_factory=dict)
    supersedes: str | None = None
    superseded_by: str | None = None
    decided_by: str | None = None


class ContributionDetail(msgspec.Struct, frozen=True):
    view: ContributionView
    member_id: int
    submission: Submission | None
    record: Record | None


class Claimed(msgspec.Struct, frozen=True):
    seq: int
    uid: str
    created_at: int
    contributor_hash: str  # the member's own (internal) hash
    submission: bytes
    handle: str = ""  # the member's stored name, credited by `username` attribution

    @property
    def contributor(self) -> Contributor:
        return Contributor(member_hash=self.contributor_hash, handle=self.handle)


class BatchReport(msgspec.Struct, frozen=True):
    paused: bool = False  # the quality freeze is on: nothing was processed
    accepted: int = 0
    quarantined: int = 0
    duplicate: int = 0
    skipped: int = 0


_VIEW_COLUMNS: Final = (
    "uid, state, channel, label, license, ai_use, scope, eval, language, tags, created_at, "
    "updated_at, released_in, reason, pii, supersedes, superseded_by, decided_by"
)


def _view(row: tuple[object, ...]) -> ContributionView:
    (uid, state, channel, label, licence, ai_use, scope, ev, language, tags, created, updated,
     released, reason, pii, supersedes, superseded_by, decided_by) = row  # fmt: skip
    return ContributionView(
        uid=str(uid),
        state=ContributionState(str(state)),
        channel=str(channel),
        label=str(label),
        license=str(licence),
        ai_use=str(ai_use),
        scope=str(scope),
        eval=str(ev),
        language=None if language is None else str(language),
        tags=json.loads(str(tags)),
        created_at=int(created),  # type: ignore[call-overload]
        updated_at=int(updated),  # type: ignore[call-overload]
        released_in=None if released is None else f"v{released}",
        reason=None if reason is None else str(reason),
        pii={} if pii is None else json.loads(str(pii)),
        supersedes=None if supersedes is None else str(supersedes),
        superseded_by=None if superseded_by is None else str(superseded_by),
        decided_by=None if decided_by is None else str(decided_by),
    )


def bump_stage(conn: sqlite3.Connection, *, now: int, channel: str, stage: Stage, n: int = 1) -> None:
    if n <= 0:
        return
    conn.execute(
        "INSERT INTO stage_counts (day, channel, stage, n) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (day, channel, stage) DO UPDATE SET n = n + excluded.n",
        (now - now % _DAY, channel, stage.value, n),
    )


class NewContribution(msgspec.Struct, frozen=True):
    """One contribution on its way into the waiting room."""

    uid: str
    member: Member
    submission: Submission
    now: int
    idempotency: Idempotency | None = None
    client: ClientInfo | None = None


def insert_contribution(
    conn: sqlite3.Connection,
    *,
    uid: str,
    member: Member,
    submission: Submission,
    now: int,
    idempotency: Idempotency | None,
    client: ClientInfo | None,
) -> InsertResult:
    """Put a contribution in the waiting room (or return the earlier one for a retried key)."""
    (result,) = insert_contributions(
        conn, [NewContribution(uid, member, submission, now, idempotency, client)]
    )
    if isinstance(result, BaseException):
        raise result
    return result


def insert_contributions(
    conn: sqlite3.Connection, items: list[NewContribution]
) -> list[InsertResult | InputError]:
    """Many contributions in a few statements (the intake's group commit); one result each.

    A retried Idempotency-Key answers with the contribution it made before; a key reused
    for a different body is a :class:`ConflictError` for that item only, and so is an
    attribution that passes for another member's name (see :func:`attribution.settle`).
    """
    results: list[InsertResult | InputError | None] = [None] * len(items)
    fresh: list[int] = []
    seen: dict[tuple[str, str], tuple[str, str]] = {}  # keys earlier in this batch: (sha, uid)
    items = list(items)
    for index, item in enumerate(items):
        try:
            attribution = settle(conn, item.member, item.submission.attribution, now=item.now)
        except InputError as exc:
            results[index] = exc
            continue
        submission = msgspec.structs.replace(item.submission, attribution=attribution)
        item = items[index] = msgspec.structs.replace(item, submission=submission)
        key = item.idempotency
        if key is None:
            fresh.append(index)
            continue
        earlier = seen.get((key.scope, key.key))
        row = (
            earlier
            or conn.execute(
                "SELECT request_sha256, uid FROM idempotency WHERE scope = ? AND key = ?",
                (key.scope, key.key),
            ).fetchone()
        )
        if row is None:
            seen[(key.scope, key.key)] = (key.request_sha256, item.uid)
            fresh.append(index)
        elif row[0] != key.request_sha256:
            results[index] = ConflictError(
                "this Idempotency-Key was already used for a different contribution", field="Idempotency-Key"
            )
        elif earlier is not None:
            results[index] = InsertResult(uid=row[1], created=False, state=S.WAITING)
        else:
            (state,) = conn.execute("SELECT state FROM contributions WHERE uid = ?", (row[1],)).fetchone()
            results[index] = InsertResult(uid=row[1], created=False, state=ContributionState(state))
    new = [items[i] for i in fresh]
    conn.executemany(
        "INSERT INTO contributions (uid, member_id, state, channel, created_at, updated_at, label,"
        " license, ai_use, scope, eval, prompt_shown, language, tags)"
        " VALUES (?, ?, 'waiting_room', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                it.uid,
                it.member.id,
                it.submission.channel.value,
                it.now,
                it.now,
                it.submission.label.value,
                it.submission.license.value,
                it.submission.ai_use,
                it.submission.scope.value,
                it.submission.eval.value,
                int(it.submission.prompt_shown),
                it.submission.language,
                json.dumps(list(it.submission.tags)),
            )
            for it in new
        ],
    )
    conn.executemany(
        "INSERT INTO contents (seq, submission) SELECT seq, ? FROM contributions WHERE uid = ?",
        [(_SUBMISSION_ENCODER.encode(it.submission), it.uid) for it in new],
    )
    conn.executemany(
        "INSERT INTO idempotency (scope, key, request_sha256, uid, created_at) VALUES (?, ?, ?, ?, ?)",
        [
            (it.idempotency.scope, it.idempotency.key, it.idempotency.request_sha256, it.uid, it.now)
            for it in new
            if it.idempotency is not None
        ],
    )
    # Captured, consent and prompt-shown are counted from these rows (see metrics.collect):
    # nothing more to write on this hot path but the security data.
    conn.executemany(
        "INSERT INTO security_events (at, ip, user_agent, member_id, action) VALUES (?, ?, ?, ?, 'contribute')",
        [(it.now, it.client.ip, it.client.user_agent, it.member.id) for it in new if it.client is not None],
    )
    for i in fresh:
        results[i] = InsertResult(uid=items[i].uid, created=True, state=S.WAITING)
    return [r for r in results if r is not None]


def shown_to(view: ContributionView, audience: Audience) -> Disclosure:
    """What the policy lets the member (or an admin) see of their contribution."""
    facts = RecordFacts(
        uid=view.uid,
        scope=Scope(view.scope),
        license=License(view.license),
        ai_use=view.ai_use,
        eval=EvalConsent(view.eval),
        attribution=AttributionMode.ANONYMOUS,  # the member and admins see the internal link anyway
        state=RecordState(view.state.value),
        admitted=view.released_in is not None,
        tags=tuple(view.tags),
        language=view.language,
    )
    return disclose(facts, CollectiveState(), audience)


def list_member_contributions(conn: sqlite3.Connection, member_id: int) -> list[ContributionView]:
    rows = conn.execute(
        f"SELECT {_VIEW_COLUMNS} FROM contributions WHERE member_id = ? ORDER BY seq", (member_id,)
    ).fetchall()
    return [view for view in map(_view, rows) if shown_to(view, Audience.MEMBER)]


def list_by_state(
    conn: sqlite3.Connection, state: ContributionState, *, limit: int = 500, after: int = 0
) -> list[ContributionView]:
    """Contributions in one state, for the admins' queues."""
    rows = conn.execute(
        f"SELECT {_VIEW_COLUMNS} FROM contributions WHERE state = ? AND seq > ? ORDER BY seq LIMIT ?",
        (state.value, after, limit),
    ).fetchall()
    return [view for view in map(_view, rows) if shown_to(view, Audience.ADMIN)]


def get_contribution(conn: sqlite3.Connection, uid: str) -> ContributionDetail | None:
    row = conn.execute(
        f"SELECT {_VIEW_COLUMNS}, member_id, t.submission, t.record FROM contributions"
        " LEFT JOIN contents t USING (seq) WHERE uid = ?",
        (uid,),
    ).fetchone()
    if row is None:
        return None
    n = len(row)
    submission = None if row[n - 2] is None else _SUBMISSION_DECODER.decode(row[n - 2])
    record = None if row[n - 1] is None else _RECORD_DECODER.decode(row[n - 1])
    return ContributionDetail(
        view=_view(row[: n - 3]), member_id=row[n - 3], submission=submission, record=record
    )


def _owned(conn: sqlite3.Connection, uid: str, member: Member | None) -> tuple[int, ContributionState, int]:
    """(seq, state, member_id) of a contribution the caller may act on, else 404."""
    row = conn.execute("SELECT seq, state, member_id FROM contributions WHERE uid = ?", (uid,)).fetchone()
    # Someone else's contribution is reported exactly like a missing one: no existence leak.
    if row is None or (member is not None and row[2] != member.id):
        raise NotFoundError(f"no contribution {uid} of yours", field="uid")
    return int(row[0]), ContributionState(row[1]), int(row[2])


def iter_member_records(conn: sqlite3.Connection, member_id: int) -> Iterator[bytes]:
    """Every contribution of a member as one JSON line each (data portability)."""
    cursor = conn.execute(
        f"SELECT {_VIEW_COLUMNS}, t.submission, t.record FROM contributions"
        " LEFT JOIN contents t USING (seq) WHERE member_id = ? ORDER BY seq",
        (member_id,),
    )
    encoder = msgspec.json.Encoder()
    for row in cursor:
        view = _view(row[:-2])
        item: dict[str, object] = {"contribution": view}
        if not shown_to(view, Audience.MEMBER).carries_content:
            pass  # withdrawn: the member sees that it existed, and nothing of its text
        elif row[-1] is not None:
            item["record"] = msgspec.Raw(row[-1])
        elif row[-2] is not None:
            item["submission"] = msgspec.Raw(row[-2])
        yield encoder.encode(item) + b"\n"


def withdraw_contribution(
    conn: sqlite3.Connection, *, uid: str, member: Member | None, now: int
) -> ContributionState:
    """Erase a contribution: content gone at once; a tombstone if it was ever published."""
    seq, state, _ = _owned(conn, uid, member)
    if state is S.WITHDRAWN:
        return state
    left_tick = next_tick(conn) if state.live else None
    conn.execute(
        "UPDATE contributions SET state = 'withdrawn', claim = NULL,"
        " withdrawn_at = ?, updated_at = ?, left_tick = coalesce(?, left_tick) WHERE seq = ?",
        (now, now, left_tick, seq),
    )
    _erase(conn, seq)
    unindex(conn, seq)
    if state.live:
        conn.execute(
            "INSERT OR IGNORE INTO tombstones (uid, at, reason) VALUES (?, ?, 'withdrawn')",
            (uid, now),
        )
    # A withdrawn chat may be shared again later: its retry key must not answer for it.
    conn.execute("DELETE FROM idempotency WHERE uid = ?", (uid,))
    return S.WITHDRAWN


def _erase(conn: sqlite3.Connection, seq: int) -> None:
    conn.execute("UPDATE contents SET submission = NULL, record = NULL WHERE seq = ?", (seq,))
    scrub_after_commit()


def edit_contribution(
    conn: sqlite3.Connection,
    *,
    uid: str,
    member: Member,
    edited: Submission,
    new_uid: str,
    now: int,
) -> tuple[str, ContributionState]:
    """Rectify: in place while nothing published it (back to the waiting room); once a
    release or a manifest has published it, as a new record, the old one tombstoned.

    Returns the uid that now carries the member's data and its state.
    """
    seq, state, _ = _owned(conn, uid, member)
    (listed,) = conn.execute("SELECT listed_seq FROM contributions WHERE seq = ?", (seq,)).fetchone()
    edited = msgspec.structs.replace(edited, attribution=settle(conn, member, edited.attribution, now=now))
    columns = (
        edited.label.value,
        edited.license.value,
        edited.ai_use,
        edited.scope.value,
        edited.eval.value,
        edited.language,
        json.dumps(list(edited.tags)),
    )
    content = _SUBMISSION_ENCODER.encode(edited)
    published = state is S.RELEASED or (state is S.ACCEPTED and listed is not None)
    if state in (S.WAITING, S.PROCESSING, S.QUARANTINED, S.ACCEPTED) and not published:
        left_tick = next_tick(conn) if state.live else None
        conn.execute(
            "UPDATE contributions SET label = ?, license = ?, ai_use = ?, scope = ?, eval = ?,"
            " language = ?, tags = ?, state = 'waiting_room',"
            " record_sha256 = NULL, dedup_key = NULL, pii = NULL, reason = NULL, claim = NULL,"
            " updated_at = ?, left_tick = coalesce(?, left_tick) WHERE seq = ?",
            (*columns, now, left_tick, seq),
        )
        conn.execute("UPDATE contents SET submission = ?, record = NULL WHERE seq = ?", (content, seq))
        scrub_after_commit()  # the text as it was before the edit is not kept
        return uid, S.WAITING
    if published:
        cur = conn.execute(
            "INSERT INTO contributions (uid, member_id, state, channel, created_at, updated_at, label,"
            " license, ai_use, scope, eval, language, tags, supersedes)"
            " VALUES (?, ?, 'waiting_room', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (new_uid, member.id, edited.channel.value, now, now, *columns, uid),
        )
        conn.execute("INSERT INTO contents (seq, submission) VALUES (?, ?)", (cur.lastrowid, content))
        conn.execute(
            "UPDATE contributions SET state = 'withdrawn', withdrawn_at = ?, updated_at = ?,"
            " superseded_by = ?, left_tick = ? WHERE seq = ?",
            (now, now, new_uid, next_tick(conn), seq),
        )
        _erase(conn, seq)
        unindex(conn, seq)
        conn.execute(
            "INSERT OR IGNORE INTO tombstones (uid, at, reason, replaced_by) VALUES (?, ?, 'rectified', ?)",
            (uid, now, new_uid),
        )
        return new_uid, S.WAITING
    raise StateError(f"a {state.value} contribution cannot be edited", field="uid")


def current_submission(
    conn: sqlite3.Connection, uid: str, member: Member, *, terms_version: str
) -> tuple[Submission, ContributionState]:
    """The stored submission of a member's contribution, for editing.

    Once processed, only the redacted record is kept: the edit starts from it (so the
    raw text never comes back), under the current ``terms_version``.
    """
    _owned(conn, uid, member)
    row = conn.execute(
        "SELECT t.submission, t.record, state FROM contributions LEFT JOIN contents t USING (seq)"
        " WHERE uid = ?",
        (uid,),
    ).fetchone()
    state = ContributionState(row[2])
    if row[0] is not None:
        return _SUBMISSION_DECODER.decode(row[0]), state
    if row[1] is not None:
        return redacted_submission(_RECORD_DECODER.decode(row[1]), terms_version=terms_version), state
    raise StateError(f"a {state.value} contribution has no content left to edit", field="uid")


def quarantined_entry(conn: sqlite3.Connection, uid: str) -> Claimed:
    """The stored entry of a quarantined contribution, for an admin's decision."""
    row = conn.execute(
        "SELECT c.seq, c.uid, c.created_at, m.contributor_hash, t.submission, c.state, m.name"
        " FROM contributions c JOIN members m ON m.id = c.member_id LEFT JOIN contents t ON t.seq = c.seq"
        " WHERE c.uid = ?",
        (uid,),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no contribution {uid}", field="uid")
    if row[5] != S.QUARANTINED.value:
        raise StateError(f"{uid} is {row[5]}, not quarantined", field="uid")
    return Claimed(
        seq=row[0], uid=row[1], created_at=row[2], contributor_hash=row[3], submission=row[4], handle=row[6]
    )


def recover_claims(conn: sqlite3.Connection) -> int:
    """Return rows left in 'processing' by a killed processor to the waiting room.

    Called only while holding the processor lock, so no live processor owns them.
    """
    cur = conn.execute(
        "UPDATE contributions SET state = 'waiting_room', claim = NULL WHERE state = 'processing'"
    )
    return cur.rowcount


def claim_batch(conn: sqlite3.Connection, *, claim: int, limit: int) -> list[Claimed]:
    rows = conn.execute(
        "SELECT c.seq, c.uid, c.created_at, m.contributor_hash, t.submission, m.name"
        " FROM contributions c JOIN members m ON m.id = c.member_id JOIN contents t ON t.seq = c.seq"
        " WHERE c.state = 'waiting_room' ORDER BY c.seq LIMIT ?",
        (limit,),
    ).fetchall()
    conn.executemany(
        "UPDATE contributions SET state = 'processing', claim = ? WHERE seq = ?",
        [(claim, row[0]) for row in rows],
    )
    return [
        Claimed(seq=r[0], uid=r[1], created_at=r[2], contributor_hash=r[3], submission=r[4], handle=r[5])
        for r in rows
    ]


def finish_batch(
    conn: sqlite3.Connection, *, claim: int, outcomes: list[tuple[int, Outcome]], now: int
) -> BatchReport:
    accepted = quarantined = duplicate = skipped = 0
    for seq, outcome in outcomes:
        row = conn.execute(
            "SELECT channel FROM contributions WHERE seq = ? AND state = 'processing' AND claim = ?",
            (seq, claim),
        ).fetchone()
        if row is None:  # withdrawn or edited while we worked: its new state stands
            skipped += 1
            continue
        if isinstance(outcome, Quarantined):
            conn.execute(
                "UPDATE contributions SET state = 'quarantined', reason = ?, pii = ?, claim = NULL,"
                " updated_at = ? WHERE seq = ?",
                (outcome.reason, json.dumps(outcome.pii), now, seq),
            )
            quarantined += 1
            continue
        if _accept(conn, seq=seq, outcome=outcome, now=now, channel=row[0]):
            accepted += 1
        else:
            duplicate += 1
    return BatchReport(accepted=accepted, quarantined=quarantined, duplicate=duplicate, skipped=skipped)


def _accept(
    conn: sqlite3.Connection,
    *,
    seq: int,
    outcome: Accepted,
    now: int,
    channel: str,
    decided_by: str | None = None,
) -> bool:
    """Accept a processed entry, or mark it a duplicate of a live record; True if accepted."""
    same = conn.execute(
        "SELECT uid FROM contributions WHERE dedup_key = ? AND state IN ('accepted', 'released')"
        " AND seq != ? LIMIT 1",
        (outcome.dedup_key, seq),
    ).fetchone()
    if same is not None:
        conn.execute(
            "UPDATE contributions SET state = 'duplicate', reason = ?, claim = NULL,"
            " updated_at = ? WHERE seq = ?",
            (f"the same conversation is already record {same[0]}", now, seq),
        )
        _erase(conn, seq)
        return False
    conn.execute(
        "UPDATE contributions SET state = 'accepted', record_sha256 = ?, dedup_key = ?,"
        " pii = ?, reason = NULL, claim = NULL, accepted_tick = ?, updated_at = ?,"
        " decided_by = coalesce(?, decided_by) WHERE seq = ?",
        (
            outcome.record_sha256,
            outcome.dedup_key,
            json.dumps(outcome.pii),
            next_tick(conn),
            now,
            decided_by,
            seq,
        ),
    )
    # The redacted record is all that is kept: the raw submission (names, e-mails, numbers)
    # was needed only until processing, or until an admin's decision on a quarantined item.
    conn.execute(
        "UPDATE contents SET record = ?, submission = NULL WHERE seq = ?", (outcome.record_bytes, seq)
    )
    scrub_after_commit()
    bump_stage(conn, now=now, channel=channel, stage=Stage.TRANSFORM_OK)
    return True


def decide_quarantine(
    conn: sqlite3.Connection,
    *,
    uid: str,
    decision: Decision,
    admin: str,
    outcome: Accepted | None,
    now: int,
) -> ContributionState:
    """An admin's decision on a quarantined item: release it (redacted) or reject it (erased)."""
    seq, state, _ = _owned(conn, uid, None)
    if state is not S.QUARANTINED:
        raise StateError(f"{uid} is {state.value}, not quarantined", field="uid")
    if decision is Decision.REJECT:
        conn.execute(
            "UPDATE contributions SET state = 'rejected', decided_by = ?, updated_at = ? WHERE seq = ?",
            (admin, now, seq),
        )
        _erase(conn, seq)
        return S.REJECTED
    if outcome is None:
        raise StateError(f"{uid} cannot be released: it failed validation", field="uid")
    (channel,) = conn.execute("SELECT channel FROM contributions WHERE seq = ?", (seq,)).fetchone()
    if _accept(conn, seq=seq, outcome=outcome, now=now, channel=channel, decided_by=admin):
        return S.ACCEPTED
    return S.DUPLICATE
