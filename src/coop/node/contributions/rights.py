"""A member's rights over their contributions in the store: export, withdrawal, rectification.

Each function is one transaction's worth of work on a connection (run it through the
store's writer), or one read.  A member acts only on their own contributions; someone
else's is answered exactly like a missing one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Final

import msgspec

from coop.governance import Audience, Record
from coop.node.contributions.pipeline import redacted_submission
from coop.node.contributions.repository import (
    VIEW_COLUMNS,
    S,
    erase_content,
    member_contribution,
    owned_contribution,
    shown_to,
    unlist,
    view_of,
)
from coop.node.contributions.submission import ContributionState, Submission
from coop.node.errors import StateError
from coop.node.members.accounts import Member
from coop.node.members.attribution import settle
from coop.node.storage.store import next_tick
from coop.node.storage.writer import scrub_after_commit

__all__ = [
    "current_submission",
    "edit_contribution",
    "iter_member_records",
    "tombstone_channel_records",
    "withdraw_contribution",
]

_SUBMISSION_ENCODER: Final = msgspec.json.Encoder()
_SUBMISSION_DECODER: Final = msgspec.json.Decoder(Submission)
_RECORD_DECODER: Final = msgspec.json.Decoder(Record)


def iter_member_records(conn: sqlite3.Connection, member_id: int) -> Iterator[bytes]:
    """Every contribution of a member as one JSON line each (data portability)."""
    cursor = conn.execute(
        f"SELECT {VIEW_COLUMNS}, t.submission, t.record FROM contributions"
        " LEFT JOIN contents t USING (seq) WHERE member_id = ? ORDER BY seq",
        (member_id,),
    )
    encoder = msgspec.json.Encoder()
    for row in cursor:
        view = view_of(row[:-2])
        item: dict[str, object] = {
            "contribution": member_contribution(view, submission=row[-2], record=row[-1])
        }
        if not shown_to(view, Audience.MEMBER).carries_content:
            pass  # withdrawn: the member sees that it existed, and nothing of its text
        elif row[-1] is not None:
            item["record"] = msgspec.Raw(row[-1])
        elif row[-2] is not None:
            item["submission"] = msgspec.Raw(row[-2])
        yield encoder.encode(item) + b"\n"


def tombstone_channel_records(conn: sqlite3.Connection, *, seq: int, at: int) -> None:
    """Record ``seq`` was withdrawn or rectified at ``at`` (in the same transaction): every
    publish channel's ledger row of it is tombstoned, to be retracted where it was published.

    It lives here, not in releases/, because withdrawal is the contributions area's act and
    contributions may not import releases; ``releases.channel_records.withdrawn`` calls it.
    """
    conn.execute(
        "UPDATE channel_records SET state = 'tombstoned', withdrawn_at = coalesce(withdrawn_at, ?) WHERE seq = ?",
        (at, seq),
    )


def withdraw_contribution(
    conn: sqlite3.Connection, *, uid: str, member: Member | None, now: int
) -> ContributionState:
    """Erase a contribution: content gone at once; a tombstone if it was ever published."""
    seq, state, _ = owned_contribution(conn, uid, member)
    if state is S.WITHDRAWN:
        return state
    left_tick = next_tick(conn) if state.live else None
    conn.execute(
        "UPDATE contributions SET state = 'withdrawn', claim = NULL,"
        " withdrawn_at = ?, updated_at = ?, left_tick = coalesce(?, left_tick) WHERE seq = ?",
        (now, now, left_tick, seq),
    )
    erase_content(conn, seq)
    unlist(conn, seq)
    if state.live:
        conn.execute(
            "INSERT OR IGNORE INTO tombstones (uid, at, reason) VALUES (?, ?, 'withdrawn')",
            (uid, now),
        )
    tombstone_channel_records(conn, seq=seq, at=now)  # to leave every channel that carried it
    # A withdrawn chat may be shared again later: its retry key must not answer for it.
    conn.execute("DELETE FROM idempotency WHERE uid = ?", (uid,))
    return S.WITHDRAWN


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
    seq, state, _ = owned_contribution(conn, uid, member)
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
        erase_content(conn, seq)
        unlist(conn, seq)
        conn.execute(
            "INSERT OR IGNORE INTO tombstones (uid, at, reason, replaced_by) VALUES (?, ?, 'rectified', ?)",
            (uid, now, new_uid),
        )
        tombstone_channel_records(conn, seq=seq, at=now)
        return new_uid, S.WAITING
    raise StateError(f"a {state.value} contribution cannot be edited", field="uid")


def current_submission(
    conn: sqlite3.Connection, uid: str, member: Member, *, terms_version: str
) -> tuple[Submission, ContributionState]:
    """The stored submission of a member's contribution, for editing.

    Once processed, only the redacted record is kept: the edit starts from it (so the
    raw text never comes back), under the current ``terms_version``.
    """
    owned_contribution(conn, uid, member)
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
