"""The pipeline's steps and the admins' review in the store: claim, finish, decide quarantine.

A processor claims a batch of waiting entries, processes them outside any transaction,
and finishes the batch: a row withdrawn or edited meanwhile is no longer its claim, and
its result is dropped.  Accepting keeps only the redacted record.
"""

from __future__ import annotations

import json
import sqlite3

from coop.node.contributions.pipeline import Accepted, Outcome, Quarantined
from coop.node.contributions.repository import (
    BatchReport,
    Claimed,
    Decision,
    S,
    Stage,
    bump_stage,
    erase_content,
    owned_contribution,
)
from coop.node.contributions.submission import ContributionState
from coop.node.errors import NotFoundError, StateError
from coop.node.storage.store import next_tick
from coop.node.storage.writer import scrub_after_commit

__all__ = ["claim_batch", "decide_quarantine", "finish_batch", "quarantined_entry", "recover_claims"]


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
        erase_content(conn, seq)
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
    seq, state, _ = owned_contribution(conn, uid, None)
    if state is not S.QUARANTINED:
        raise StateError(f"{uid} is {state.value}, not quarantined", field="uid")
    if decision is Decision.REJECT:
        conn.execute(
            "UPDATE contributions SET state = 'rejected', decided_by = ?, updated_at = ? WHERE seq = ?",
            (admin, now, seq),
        )
        erase_content(conn, seq)
        return S.REJECTED
    if outcome is None:
        raise StateError(f"{uid} cannot be released: it failed validation", field="uid")
    (channel,) = conn.execute("SELECT channel FROM contributions WHERE seq = ?", (seq,)).fetchone()
    if _accept(conn, seq=seq, outcome=outcome, now=now, channel=channel, decided_by=admin):
        return S.ACCEPTED
    return S.DUPLICATE
