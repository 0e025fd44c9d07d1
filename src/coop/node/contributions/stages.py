"""Stage counts of the record-generation model as the store holds them (for metrics)."""

from __future__ import annotations

import sqlite3

from coop.node.contributions.repository import Stage

__all__ = ["captured_by_channel", "published_since", "stage_totals"]


def stage_totals(conn: sqlite3.Connection) -> list[tuple[str, str, int]]:
    """(intake channel, stage, count) over all days, counted as they happened."""
    rows = conn.execute(
        "SELECT channel, stage, sum(n) FROM stage_counts GROUP BY channel, stage ORDER BY channel"
    )
    return [(str(channel), str(stage), int(n)) for channel, stage, n in rows]


def captured_by_channel(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """Stored contributions per intake channel; a rectification is not a new one."""
    rows = conn.execute(
        "SELECT channel, count(*) FROM contributions WHERE supersedes IS NULL GROUP BY channel"
    )
    return [(str(channel), int(n)) for channel, n in rows]


def published_since(conn: sqlite3.Connection, since: int) -> list[tuple[str, int]]:
    """Records published per intake channel on the days from ``since`` (a day's start) on."""
    rows = conn.execute(
        "SELECT channel, sum(n) FROM stage_counts WHERE stage = ? AND day >= ? GROUP BY channel",
        (Stage.PUBLISHED.value, since),
    )
    return [(str(channel), int(n)) for channel, n in rows]
