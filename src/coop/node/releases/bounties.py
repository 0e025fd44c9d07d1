"""Bounties: what an admin asks members for (a label, language or tag), and the progress toward it."""

from __future__ import annotations

import sqlite3

import msgspec

__all__ = ["Bounty", "add_bounty", "bounties", "close_bounty"]


class Bounty(msgspec.Struct, frozen=True):
    id: int
    title: str
    description: str
    label: str | None
    language: str | None
    tag: str | None
    target: int
    created_by: str
    created_at: int
    closed_at: int | None
    progress: int

    @property
    def percent(self) -> int:
        return min(100, self.progress * 100 // max(self.target, 1))


def add_bounty(
    conn: sqlite3.Connection,
    *,
    title: str,
    description: str,
    label: str | None,
    language: str | None,
    tag: str | None,
    target: int,
    admin: str,
    now: int,
) -> int:
    cur = conn.execute(
        "INSERT INTO bounties (title, description, label, language, tag, target, created_by, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (title, description, label, language, tag, target, admin, now),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def close_bounty(conn: sqlite3.Connection, bounty_id: int, *, now: int) -> None:
    conn.execute("UPDATE bounties SET closed_at = ? WHERE id = ? AND closed_at IS NULL", (now, bounty_id))


def bounties(conn: sqlite3.Connection, *, include_closed: bool = False) -> list[Bounty]:
    """Bounties with their progress: accepted or released contributions made since, that match."""
    rows = conn.execute(
        "SELECT id, title, description, label, language, tag, target, created_by, created_at, closed_at FROM bounties"
        + ("" if include_closed else " WHERE closed_at IS NULL")
        + " ORDER BY created_at DESC"
    ).fetchall()
    out = []
    for row in rows:
        where = ["state IN ('accepted', 'released')", "created_at >= ?"]
        params: list[object] = [row[8]]
        if row[3]:
            where.append("label = ?")
            params.append(row[3])
        if row[4]:
            where.append("language = ?")
            params.append(row[4])
        if row[5]:
            where.append("EXISTS (SELECT 1 FROM json_each(contributions.tags) WHERE value = ?)")
            params.append(row[5])
        (progress,) = conn.execute(
            f"SELECT count(*) FROM contributions WHERE {' AND '.join(where)}", params
        ).fetchone()
        bid, title, description, label, language, tag, target, created_by, created_at, closed_at = row
        out.append(
            Bounty(
                id=bid,
                title=title,
                description=description,
                label=label,
                language=language,
                tag=tag,
                target=target,
                created_by=created_by,
                created_at=created_at,
                closed_at=closed_at,
                progress=int(progress),
            )
        )
    return out
