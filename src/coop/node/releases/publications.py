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
    # Under review (a pull request): "open" until merged or closed, then ``settled_at`` says
    # when that was seen; a publication live at once is "merged" and settled when published.
    state: str = "merged"
    settled_at: int | None = None


_COLUMNS: Final = "channel, target, release, ref, records, at, state, settled_at"


def record_publication(
    conn: sqlite3.Connection, publication: Publication, *, cleared_tick: int | None = None
) -> None:
    """Keep one publication; ``cleared_tick``: the database tick its files were checked clear of
    withdrawals at (:mod:`coop.node.releases.channel_records`: a review merged settles by it)."""
    conn.execute(
        f"INSERT INTO publications ({_COLUMNS}, cleared_tick) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            publication.channel,
            publication.target,
            publication.release,
            publication.ref,
            publication.records,
            publication.at,
            publication.state,
            publication.settled_at,
            cleared_tick,
        ),
    )


def _publication(row: tuple[str, str, str, str, int, int, str, int | None]) -> Publication:
    return Publication(
        channel=row[0],
        target=row[1],
        release=row[2],
        ref=row[3],
        records=row[4],
        at=row[5],
        state=row[6],
        settled_at=row[7],
    )


def list_publications(conn: sqlite3.Connection) -> list[Publication]:
    return [_publication(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM publications ORDER BY id")]


def last_publication(conn: sqlite3.Connection, channel: str) -> Publication | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM publications WHERE channel = ? ORDER BY id DESC LIMIT 1", (channel,)
    ).fetchone()
    return None if row is None else _publication(row)


def latest_per_channel(conn: sqlite3.Connection) -> list[tuple[str, str, int, int]]:
    """Each channel's last live publication: (channel, release name, records, when), by channel.

    A release offered for review (``state`` open) or refused (closed) is not live: the channel's
    lag counts it until its maintainers merge it.
    """
    rows = conn.execute(
        "SELECT channel, release, records, coalesce(settled_at, at) FROM publications p"
        " WHERE id = (SELECT max(id) FROM publications q WHERE q.channel = p.channel AND q.state = 'merged')"
        " ORDER BY channel"
    )
    return [(str(channel), str(release), int(records), int(at)) for channel, release, records, at in rows]
