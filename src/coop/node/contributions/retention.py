"""What the node holds, for how long, and the automatic purge of what has expired.

Security data (IP address and user agent, kept for rate limiting and abuse)
goes after ``retention.security_days``; Idempotency-Keys after the same
period.  The raw submission (the chat as shared, before redaction) is kept
only while a person may need it: in the waiting room until processed, in
quarantine until an admin decides.  Accepting a record erases it and keeps the
redacted record alone, until its member withdraws it; a withdrawal or a
rejection erases everything at once and keeps only metadata, plus a tombstone
(uid and date, kept for good) where the record was published, so copies can
be deleted.  Erased text is zeroed in the database (``secure_delete``) and the
WAL is truncated after it, so neither free pages nor backups keep it.
"""

from __future__ import annotations

import sqlite3

import msgspec

from coop.node.config import Config, RetentionConfig
from coop.node.storage.writer import scrub_after_commit

__all__ = ["PurgeReport", "RetentionItem", "purge", "report"]

_DAY = 86_400


class RetentionItem(msgspec.Struct, frozen=True):
    category: str
    count: int
    oldest: int | None  # unix seconds of the oldest item held
    until: int | None  # when the oldest item goes, where a date is known
    rule: str


class PurgeReport(msgspec.Struct, frozen=True):
    security_events: int
    idempotency_keys: int
    web_sessions: int = 0
    web_uploads: int = 0


def purge(conn: sqlite3.Connection, *, now: int, config: RetentionConfig) -> PurgeReport:
    cutoff = now - config.security_days * _DAY
    events = conn.execute("DELETE FROM security_events WHERE at < ?", (cutoff,)).rowcount
    keys = conn.execute("DELETE FROM idempotency WHERE created_at < ?", (cutoff,)).rowcount
    # Sign-in sessions and uploaded exports waiting for the member's choice keep their own expiry.
    sessions = conn.execute("DELETE FROM web_sessions WHERE expires_at < ?", (now,)).rowcount
    uploads = conn.execute("DELETE FROM web_uploads WHERE expires_at < ?", (now,)).rowcount
    if uploads:
        scrub_after_commit()  # uploaded exports are raw text: leave no image of them in the WAL
    return PurgeReport(
        security_events=events, idempotency_keys=keys, web_sessions=sessions, web_uploads=uploads
    )


def report(conn: sqlite3.Connection, *, now: int, config: Config) -> list[RetentionItem]:
    days = config.retention.security_days
    items: list[RetentionItem] = []

    def add(
        category: str, sql: str, rule: str, keep: int | None = None, args: tuple[object, ...] = ()
    ) -> None:
        count, oldest = conn.execute(sql, args).fetchone()
        until = None if oldest is None or keep is None else int(oldest) + keep
        items.append(
            RetentionItem(category=category, count=int(count), oldest=oldest, until=until, rule=rule)
        )

    add(
        "security data (IP, user agent)",
        "SELECT count(*), min(at) FROM security_events",
        f"purged automatically after {days} days",
        days * _DAY,
    )
    add(
        "idempotency keys",
        "SELECT count(*), min(created_at) FROM idempotency",
        f"purged automatically after {days} days",
        days * _DAY,
    )
    add(
        "web sign-in sessions",
        "SELECT count(*), min(expires_at) FROM web_sessions",
        "each ends 30 days after sign-in, or at sign-out",
        0,
    )
    add(
        "uploaded exports not yet shared (raw)",
        "SELECT count(*), min(expires_at) FROM web_uploads",
        "deleted an hour after upload",
        0,
    )
    add(
        "raw submissions (the chat as shared, before redaction)",
        "SELECT count(*), min(c.updated_at) FROM contents t JOIN contributions c USING (seq)"
        " WHERE t.submission IS NOT NULL",
        "kept only until processed, or if quarantined until an admin's decision; then erased",
    )
    add(
        "redacted records",
        "SELECT count(*), min(c.updated_at) FROM contents t JOIN contributions c USING (seq)"
        " WHERE t.record IS NOT NULL",
        "kept until withdrawn by its member; then erased",
    )
    for state, rule in (
        (
            "waiting_room",
            f"raw text until processed (every {config.pipeline.interval_seconds:g} s while serving)",
        ),
        ("processing", "raw text until the current batch finishes"),
        (
            "quarantined",
            "raw text until an admin decides: release keeps the redacted record only, reject erases all",
        ),
        ("accepted", "redacted record only, until withdrawn by its member"),
        ("released", "redacted record only, until withdrawn by its member"),
    ):
        add(
            f"contributions: {state}",
            "SELECT count(*), min(updated_at) FROM contributions WHERE state = ?",
            rule,
            args=(state,),
        )
    add(
        "erased (withdrawn, rejected, duplicate): metadata only, no content",
        "SELECT count(*), min(updated_at) FROM contributions WHERE state IN ('withdrawn', 'rejected', 'duplicate')",
        "content erased at once; uid, state and dates kept",
    )
    add(
        "tombstones",
        "SELECT count(*), min(at) FROM tombstones",
        "kept for good (uid, date, reason), so that every later release and mirror can delete the record",
    )
    return items
