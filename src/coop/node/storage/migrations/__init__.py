"""Numbered schema migrations, applied in order inside one transaction each.

One SQL file each, ``NNNN_what.sql`` beside this module.  Never edit a released migration: add
the next number (tests/unit/test_migrations_append_only.py holds a checksum of each).
``PRAGMA user_version`` holds the last one applied.  A database whose
history differs (made before migration 1 was last edited in place) is brought to the shape each
migration expects by :mod:`coop.node.storage.repairs`, checked against its actual schema.
"""

from __future__ import annotations

import sqlite3
from importlib import resources
from typing import Final

from coop.node.storage.repairs import REPAIRS

__all__ = ["MIGRATIONS", "NAMES", "SCRUBBING", "migrate"]


def _load() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The migration files in order, checked to be numbered 1..N: their SQL and their names."""
    files = sorted(
        (f for f in resources.files(__name__).iterdir() if f.name.endswith(".sql")), key=lambda f: f.name
    )
    sql: list[str] = []
    names: list[str] = []
    for number, file in enumerate(files, 1):
        if not file.name.startswith(f"{number:04d}_"):
            raise RuntimeError(f"migration files must be numbered 1..N without gaps: {file.name}")
        # A header of comments (what and why; `-- name:` for coop upgrade), a blank line, the SQL.
        header, _, body = file.read_text(encoding="utf-8").partition("\n\n")
        name = [
            line.removeprefix("-- name:").strip()
            for line in header.splitlines()
            if line.startswith("-- name:")
        ]
        if not name or not body.strip():
            raise RuntimeError(f"{file.name}: a header with `-- name:`, a blank line, then the SQL")
        sql.append(body)
        names.append(name[0])
    return tuple(sql), tuple(names)


# MIGRATIONS[n - 1] is migration n's SQL; NAMES[n - 1] what it does, in a few words.
MIGRATIONS, NAMES = _load()


# Migrations that erase personal data (marked so in their SQL): on an existing database they
# are followed by VACUUM and a truncating checkpoint, so that neither free pages (text freed
# before secure_delete was on) nor old WAL frames keep what was erased.
SCRUBBING: Final = frozenset(n for n, sql in enumerate(MIGRATIONS, 1) if "-- scrub:" in sql)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration not yet applied; return the schema version reached."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > len(MIGRATIONS):
        raise sqlite3.DatabaseError(
            f"database schema {version} is newer than this program ({len(MIGRATIONS)})"
        )
    for number in range(version + 1, len(MIGRATIONS) + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for repair in REPAIRS:
                if repair.before == number and repair.needed(conn):
                    for statement in _statements(repair.sql):
                        conn.execute(statement)
            for statement in _statements(MIGRATIONS[number - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    if version and SCRUBBING.intersection(range(version + 1, len(MIGRATIONS) + 1)):
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """The statements of a script, split at semicolons that end one (not those inside a
    ``CREATE TRIGGER ... BEGIN ...; END``: sqlite3.complete_statement says where one ends)."""
    statements: list[str] = []
    pending = ""
    for part in script.split(";"):
        pending = f"{pending};{part}" if pending else part
        if pending.strip() and sqlite3.complete_statement(pending + ";"):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip())
    return statements
