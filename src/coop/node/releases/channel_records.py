"""The channel ledger: which records each publish channel carried, and when they came and went.

One ``channel_records`` row per record and publish channel (git, hf, site, bluesky): the
release version that first offered it there, its state (``open`` in a pull request under
review, ``merged`` once live, ``closed`` if the request was closed unmerged, ``tombstoned``
once withdrawn or rectified), and the times it was offered, went live (P^k), was withdrawn,
and left the channel (D^k).  The metrics (yields per route and channel, throughput, retraction
hazard) and the funnel charts are counts over these rows.

Every function here is a step inside the caller's write transaction: it takes the connection
and the time (``node.now()``) and does no I/O of its own.

When a withdrawal counts as out of what a channel holds: a publication ships files checked
clear of every withdrawal committed before one read of the database (``cleared``: the tick,
table ``ticks``, that ``coop publish`` read with its last withdrawal check; for a pull request,
the one of its opening, kept in ``publications.cleared_tick``).  A withdrawal takes a tick in
its own transaction (``contributions.left_tick``), so the order is exact, whatever the clock
says: records that left at or before ``cleared`` are not in the files (the publication
retracts them); those that left after it still are (they went live, and leave at the next
live publication).  Without a check, ``cleared`` is the tick now (every withdrawal so far).
Times (``at``, ``withdrawn_at``) only say when things happened, never in which order.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Collection, Sequence
from typing import Final

from coop.node.contributions.rights import tombstone_channel_records
from coop.node.storage.store import current_tick

__all__ = [
    "PublicationState",
    "RecordState",
    "carry",
    "posted",
    "retracted",
    "settle",
    "to_retract",
    "withdrawn",
]


class RecordState(enum.StrEnum):
    """Where a record stands on one publish channel (``channel_records.state``)."""

    OPEN = "open"  # offered in a pull request under review
    MERGED = "merged"  # live on the channel
    CLOSED = "closed"  # its pull request was closed unmerged
    TOMBSTONED = "tombstoned"  # withdrawn or rectified


class PublicationState(enum.StrEnum):
    """Where a publication stands (``publications.state``): open until a review settles it."""

    OPEN = "open"
    MERGED = "merged"
    CLOSED = "closed"


# The version of a publication row: ``vN`` and ``vN-rK`` both give N.
_PUB_VERSION: Final = "CAST(substr(release, 2) AS INTEGER)"
# The tick a ledger row's record left at (0 if it never took one: out before any check).
_LEFT_TICK: Final = "coalesce((SELECT c.left_tick FROM contributions c WHERE c.seq = channel_records.seq), 0)"


def _gated_clause(gated: Collection[str]) -> tuple[str, tuple[str, ...]]:
    licences = tuple(sorted(set(gated)))
    if not licences:
        return "", ()
    return f" AND c.license NOT IN ({', '.join('?' * len(licences))})", licences


def _retract(conn: sqlite3.Connection, *, channel: str, version: int, cleared: int, at: int) -> None:
    """A live publication of ``version`` whose files were cleared of the withdrawals up to tick
    ``cleared``: the published rows withdrawn by then have left the channel now.

    Only if it is the newest version live there: a revision of an older release (a tag off the
    branch) leaves the newer release the target shows still holding the record.
    """
    (newest,) = conn.execute(
        f"SELECT max({_PUB_VERSION}) FROM publications"
        " WHERE channel = ? AND state = 'merged' AND coalesce(settled_at, at) <= ?",
        (channel, at),
    ).fetchone()
    if newest is not None and version < int(newest):
        return
    conn.execute(
        "UPDATE channel_records SET retracted_at = ?"
        " WHERE channel = ? AND withdrawn_at IS NOT NULL AND published_at IS NOT NULL"
        f" AND retracted_at IS NULL AND {_LEFT_TICK} <= ?",
        (at, channel, cleared),
    )


def carry(
    conn: sqlite3.Connection,
    *,
    channel: str,
    version: int,
    at: int,
    live: bool,
    gated: Collection[str],
    cleared: int | None = None,
    retract: bool = True,
) -> int:
    """Release ``version`` reached ``channel`` at ``at``: record what it carried there.

    ``retract=False``: it went live beside what the channel shows (git in review mode pushes a
    revision of an older release as a tag while its branch waits for a merge), so the records
    withdrawn from it have not left the channel yet.

    It carried every public record released in ``version`` or before, but those of ``gated``
    licences (their files stay home) and those withdrawn at or before tick ``cleared`` (the
    last withdrawal check's, :func:`~coop.node.storage.store.current_tick`; default: now).
    ``live``: it went live at once (a straight push, the Hub, the site): its records are
    published now, open or closed ones merged, and published records withdrawn by ``cleared``
    are retracted.  Otherwise it was offered for review (a pull request): new rows
    are open, closed ones open again.  Returns how many records went live on the channel now.
    """
    cleared = current_tick(conn) if cleared is None else cleared
    not_gated, licences = _gated_clause(gated)
    carried = (
        "SELECT c.seq FROM contributions c"
        " WHERE c.released_in IS NOT NULL AND c.released_in <= ? AND c.scope = 'public'"
        f" AND (c.withdrawn_at IS NULL OR coalesce(c.left_tick, 0) > ?){not_gated}"
    )
    params = (version, cleared, *licences)
    live_now = 0
    if live:
        # Rows already there but not live yet (open, closed, or withdrawn after the files were
        # cleared) go live with this publication.
        live_now += conn.execute(
            "UPDATE channel_records SET published_at = ?,"
            " state = CASE WHEN state = 'tombstoned' THEN state ELSE 'merged' END"
            f" WHERE channel = ? AND published_at IS NULL AND seq IN ({carried})",
            (at, channel, *params),
        ).rowcount
    else:
        conn.execute(
            f"UPDATE channel_records SET state = 'open' WHERE channel = ? AND state = 'closed' AND seq IN ({carried})",
            (channel, *params),
        )
    fresh = RecordState.MERGED if live else RecordState.OPEN
    inserted = conn.execute(
        "INSERT INTO channel_records"
        " (channel, seq, route, version, state, opened_at, published_at, withdrawn_at)"
        " SELECT ?, c.seq, c.channel, ?, CASE WHEN c.withdrawn_at IS NULL THEN ? ELSE ? END,"
        " ?, ?, c.withdrawn_at FROM contributions c"
        f" WHERE c.seq IN ({carried})"
        " AND NOT EXISTS (SELECT 1 FROM channel_records r WHERE r.channel = ? AND r.seq = c.seq)",
        (
            channel,
            version,
            fresh.value,
            RecordState.TOMBSTONED.value,
            at,
            at if live else None,
            *params,
            channel,
        ),
    ).rowcount
    if live:
        live_now += inserted
        if retract:
            _retract(conn, channel=channel, version=version, cleared=cleared, at=at)
    return live_now


def _open_publications(
    conn: sqlite3.Connection, *, channel: str, version: int, label: str | None
) -> tuple[str, tuple[object, ...]]:
    where = f"channel = ? AND state = 'open' AND {_PUB_VERSION} = ?"
    params: tuple[object, ...] = (channel, version)
    if label is not None:
        where += " AND release = ?"
        params = (*params, label)
    return where, params


def settle(
    conn: sqlite3.Connection,
    *,
    channel: str,
    version: int,
    state: str,
    at: int,
    label: str | None = None,
) -> int:
    """Release ``version``, offered to ``channel`` for review, was merged or closed (seen at ``at``).

    Its open publication rows on the channel (only ``label``'s, when given: ``vN`` or ``vN-rK``)
    take ``state``.  Merged: the open records of version N or before go live now (and those
    withdrawn after the request's files were checked, which it still held: its
    ``publications.cleared_tick``), and published ones withdrawn by then leave the channel.  Closed: the open records of version N or
    before that no other open request on the channel still offers are closed.  Returns how many
    records went live now.
    """
    settled = PublicationState(state)
    if settled is PublicationState.OPEN:
        raise ValueError("a publication settles as merged or closed")
    where, params = _open_publications(conn, channel=channel, version=version, label=label)
    (opened,) = conn.execute(f"SELECT max(cleared_tick) FROM publications WHERE {where}", params).fetchone()
    conn.execute(
        f"UPDATE publications SET state = ?, settled_at = ? WHERE {where}", (settled.value, at, *params)
    )
    if settled is PublicationState.CLOSED:
        conn.execute(
            "UPDATE channel_records SET state = 'closed'"
            " WHERE channel = ? AND state = 'open' AND version <= ? AND NOT EXISTS ("
            "  SELECT 1 FROM publications p WHERE p.channel = channel_records.channel"
            "  AND p.state = 'open' AND CAST(substr(p.release, 2) AS INTEGER) >= channel_records.version)",
            (channel, version),
        )
        return 0
    cleared = current_tick(conn) if opened is None else int(opened)
    went_live = conn.execute(
        "UPDATE channel_records SET published_at = ?,"
        " state = CASE WHEN state = 'tombstoned' THEN state ELSE 'merged' END"
        " WHERE channel = ? AND version <= ? AND published_at IS NULL"
        f" AND (state = 'open' OR (state = 'tombstoned' AND {_LEFT_TICK} > ?))",
        (at, channel, version, cleared),
    ).rowcount
    _retract(conn, channel=channel, version=version, cleared=cleared, at=at)
    return int(went_live)


def posted(
    conn: sqlite3.Connection, *, channel: str, posts: Sequence[tuple[int, str]], version: int, at: int
) -> None:
    """Records posted one by one to ``channel`` (a microblog) with release ``version``: live now,
    each with its post's reference (``(seq, at:// URI)``)."""
    conn.executemany(
        "INSERT INTO channel_records"
        " (channel, seq, route, version, state, opened_at, published_at, withdrawn_at, ref)"
        " SELECT ?, c.seq, c.channel, ?, CASE WHEN c.withdrawn_at IS NULL THEN 'merged' ELSE 'tombstoned' END,"
        " ?, ?, c.withdrawn_at, ? FROM contributions c WHERE c.seq = ?"
        " ON CONFLICT (channel, seq) DO UPDATE SET ref = excluded.ref,"
        " published_at = coalesce(channel_records.published_at, excluded.published_at),"
        " state = CASE WHEN channel_records.state = 'tombstoned' THEN 'tombstoned' ELSE 'merged' END",
        [(channel, version, at, at, ref, seq) for seq, ref in posts],
    )


def retracted(conn: sqlite3.Connection, *, channel: str, seqs: Sequence[int], at: int) -> None:
    """Records taken off ``channel`` one by one (their posts deleted) at ``at``."""
    conn.executemany(
        "UPDATE channel_records SET retracted_at = ? WHERE channel = ? AND seq = ? AND retracted_at IS NULL",
        [(at, channel, seq) for seq in seqs],
    )


def withdrawn(conn: sqlite3.Connection, *, seq: int, at: int) -> None:
    """Record ``seq`` was withdrawn or rectified at ``at`` (in the same transaction): every
    channel's row of it is tombstoned, to be retracted where it was published. The UPDATE
    lives with the withdrawal itself, in contributions/rights.py."""
    tombstone_channel_records(conn, seq=seq, at=at)


def to_retract(conn: sqlite3.Connection, *, channel: str) -> list[tuple[int, str]]:
    """The records ``channel`` published that were withdrawn since and are still there:
    ``(seq, ref)`` in order (``ref`` is the post's URI on a microblog, else empty)."""
    rows = conn.execute(
        "SELECT seq, coalesce(ref, '') FROM channel_records WHERE channel = ?"
        " AND withdrawn_at IS NOT NULL AND published_at IS NOT NULL AND retracted_at IS NULL ORDER BY seq",
        (channel,),
    )
    return [(int(seq), str(ref)) for seq, ref in rows]
