"""The release rows: a node's own releases (``releases``) and its federated ones (``federated_releases``).

Each row holds the summary as recorded at the cut (or at its latest revision);
serving trusts the row, never the folder, so a half-written cut is never seen.
"""

from __future__ import annotations

import sqlite3
from typing import Final, Literal

from coop.node.errors import NotFoundError
from coop.node.releases.model import SUMMARY_DECODER, SUMMARY_ENCODER, ReleaseSummary

__all__ = [
    "FEDERATED",
    "OWN",
    "ReleaseTable",
    "get_federated_release",
    "get_release",
    "insert_federated_release",
    "latest_version",
    "list_federated_releases",
    "list_releases",
]

ReleaseTable = Literal["releases", "federated_releases"]
OWN: Final[ReleaseTable] = "releases"
FEDERATED: Final[ReleaseTable] = "federated_releases"


def latest_version(conn: sqlite3.Connection, table: ReleaseTable = OWN) -> int:
    """The highest version cut so far (0 before the first)."""
    (version,) = conn.execute(f"SELECT coalesce(max(version), 0) FROM {table}").fetchone()
    return int(version)


def _list(conn: sqlite3.Connection, table: ReleaseTable) -> list[ReleaseSummary]:
    rows = conn.execute(f"SELECT summary FROM {table} ORDER BY version").fetchall()
    return [SUMMARY_DECODER.decode(row[0]) for row in rows]


def list_releases(conn: sqlite3.Connection) -> list[ReleaseSummary]:
    return _list(conn, OWN)


def list_federated_releases(conn: sqlite3.Connection) -> list[ReleaseSummary]:
    return _list(conn, FEDERATED)


def get_release(conn: sqlite3.Connection, version: int) -> ReleaseSummary:
    row = conn.execute("SELECT summary FROM releases WHERE version = ?", (version,)).fetchone()
    if row is None:
        raise NotFoundError(f"no release v{version}", field="version")
    return SUMMARY_DECODER.decode(row[0])


def get_federated_release(conn: sqlite3.Connection, version: int) -> ReleaseSummary:
    row = conn.execute("SELECT summary FROM federated_releases WHERE version = ?", (version,)).fetchone()
    if row is None:
        raise NotFoundError(f"no federated release v{version}", field="version")
    return SUMMARY_DECODER.decode(row[0])


def insert_federated_release(conn: sqlite3.Connection, summary: ReleaseSummary, *, now: int) -> bool:
    """Record a federated release (nothing it holds is marked: its records were released before)."""
    conn.execute(
        "INSERT INTO federated_releases (version, created_at, record_count, summary) VALUES (?, ?, ?, ?)",
        (summary.version, now, summary.records, SUMMARY_ENCODER.encode(summary)),
    )
    return True


def release_count(conn: sqlite3.Connection) -> tuple[int, int]:
    """How many own releases were cut, and the latest version (0 before the first)."""
    count, latest = conn.execute("SELECT count(*), coalesce(max(version), 0) FROM releases").fetchone()
    return int(count), int(latest)
