"""Where releases went: one ``publications`` row per release shipped to a channel target.

The metrics report each channel's last release and its lag from these rows;
the channels (:mod:`coop.node.channels`) write one after each release they ship.
"""

from __future__ import annotations

import sqlite3
from typing import Final

import msgspec

__all__ = ["Publication", "last_publication", "list_publications", "record_publication"]


class Publication(msgspec.Struct, frozen=True, kw_only=True):
    """One release shipped to one channel target: where, as what, when."""

    channel: str
    target: str
    release: str
    ref: str  # the commit, the Hub commit id, the site folder
    records: int
    at: int


_COLUMNS: Final = "channel, target, release, ref, records, at"


def record_publication(conn: sqlite3.Connection, publication: Publication) -> None:
    conn.execute(
        f"INSERT INTO publications ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        (
            publication.channel,
            publication.target,
            publication.release,
            publication.ref,
            publication.records,
            publication.at,
        ),
    )


def _publication(row: tuple[str, str, str, str, int, int]) -> Publication:
    return Publication(channel=row[0], target=row[1], release=row[2], ref=row[3], records=row[4], at=row[5])


def list_publications(conn: sqlite3.Connection) -> list[Publication]:
    return [_publication(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM publications ORDER BY id")]


def last_publication(conn: sqlite3.Connection, channel: str) -> Publication | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM publications WHERE channel = ? ORDER BY id DESC LIMIT 1", (channel,)
    ).fetchone()
    return None if row is None else _publication(row)


def latest_per_channel(conn: sqlite3.Connection) -> list[tuple[str, str, int, int]]:
    """Each channel's last publication: (channel, release name, records, when), by channel."""
    rows = conn.execute(
        "SELECT channel, release, records, at FROM publications p"
        " WHERE id = (SELECT max(id) FROM publications q WHERE q.channel = p.channel) ORDER BY channel"
    )
    return [(str(channel), str(release), int(records), int(at)) for channel, release, records, at in rows]
