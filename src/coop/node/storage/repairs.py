"""Repairs for databases whose history differs from the migrations as they stand today.

Before migrations were append-only, migration 1 was edited in place twice: 74182d8 added the
``idempotency_by_uid`` index, and 82eaf29 moved the chats out of ``contributions`` into
``contents`` and added ``prompt_shown`` and ``listed_seq``.  A database made before either edit
says ``user_version`` 1 (or more, once later code migrated it) yet lacks what today's migration 1
creates, so migration 8 (which scrubs ``contents``) and everything after it failed on it.

Each repair checks the actual schema (so it is idempotent and harmless on a database that never
needed it) and runs inside the transaction of the migration it must precede.  Like a migration,
a repair that has landed is never edited: add a new one (tests/unit/test_migrations_append_only.py
holds their checksums).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Final, NamedTuple

__all__ = ["REPAIRS", "Repair", "has_column", "has_index", "has_table"]


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return found.fetchone() is not None


def has_index(conn: sqlite3.Connection, name: str) -> bool:
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (name,))
    return found.fetchone() is not None


def has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in conn.execute("SELECT * FROM pragma_table_info(?)", (table,)))


class Repair(NamedTuple):
    """SQL that brings a database to the shape a migration expects, when it is not there yet."""

    name: str
    before: int  # the migration it precedes (run only when the database is below that number)
    needed: Callable[[sqlite3.Connection], bool]
    sql: str
    description: str


REPAIRS: Final[tuple[Repair, ...]] = (
    Repair(
        name="contents-apart",
        before=8,
        needed=lambda conn: not has_table(conn, "contents"),
        # The raw submission and the record leave the contributions row for `contents`; the old
        # columns are dropped (migration 8 then scrubs what is no longer needed, and the database
        # is vacuumed after it, so no copy stays behind in free pages).
        sql="""
        CREATE TABLE contents (
            seq INTEGER PRIMARY KEY REFERENCES contributions (seq),
            submission BLOB,
            record BLOB
        );
        INSERT INTO contents (seq, submission, record) SELECT seq, submission, record FROM contributions;
        ALTER TABLE contributions DROP COLUMN submission;
        ALTER TABLE contributions DROP COLUMN record;
        """,
        description="move each chat from contributions into the contents table (82eaf29's migration 1)",
    ),
    Repair(
        name="prompt-shown",
        before=8,
        needed=lambda conn: not has_column(conn, "contributions", "prompt_shown"),
        # Read back from what the contribution kept: the record's provenance, or the submission.
        sql="""
        ALTER TABLE contributions ADD COLUMN prompt_shown INTEGER NOT NULL DEFAULT 0;
        UPDATE contributions SET prompt_shown = 1 WHERE seq IN (
            SELECT seq FROM contents WHERE
                (json_valid(CAST(record AS TEXT))
                    AND json_extract(CAST(record AS TEXT), '$.provenance.source') = 'prompted')
                OR (json_valid(CAST(submission AS TEXT))
                    AND json_extract(CAST(submission AS TEXT), '$.prompt_shown') = 1)
        );
        """,
        description="add contributions.prompt_shown, read from each record (82eaf29's migration 1)",
    ),
    Repair(
        name="listed-seq",
        before=8,
        needed=lambda conn: not has_column(conn, "contributions", "listed_seq"),
        # Nodes from before federation never listed a record to a peer: NULL is the truth.
        sql="""
        ALTER TABLE contributions ADD COLUMN listed_seq INTEGER;
        """,
        description="add contributions.listed_seq, empty: nothing was listed yet (82eaf29's migration 1)",
    ),
    Repair(
        name="idempotency-by-uid",
        before=8,
        needed=lambda conn: not has_index(conn, "idempotency_by_uid"),
        sql="""
        CREATE INDEX idempotency_by_uid ON idempotency (uid);
        """,
        description="add the index idempotency_by_uid (74182d8's migration 1)",
    ),
)
