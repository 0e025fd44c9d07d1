"""What the publish channels and the Atom feed read of the store (one read each).

The channels (:mod:`coop.node.channels`) and the pages (:mod:`coop.node.web`) hold no SQL:
the queries they need about publications, the channel ledger, the catalogue rows a preview
may come from and the release history live here, and return plain values.  The ledger's
writes stay in :mod:`coop.node.releases.channel_records`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterator

import msgspec

from coop.governance import Embargo, JointRules
from coop.node.policy import NO_JOINT
from coop.node.releases.catalog import _hidden_sql as catalog_hidden_sql  # the pages' own rule
from coop.node.releases.channel_records import PublicationState

__all__ = [
    "PreviewRow",
    "carried_seqs",
    "cut_at",
    "declined_reviews",
    "first_audit_at",
    "live_posts",
    "open_reviews",
    "preview_rows",
    "published_releases",
    "revised_at",
]


class PreviewRow(msgspec.Struct, frozen=True, kw_only=True):
    """A catalogue row a preview may be made of, with its record's AI-use preference."""

    seq: int
    uid: str
    title: str
    license: str
    label: str
    released_in: int
    created_at: int
    language: str | None
    tags: tuple[str, ...]
    ai_use: str


def published_releases(conn: sqlite3.Connection, *, channel: str, target: str) -> list[str]:
    """Releases published (or offered) on ``channel`` at ``target``: its ``publications`` rows,
    oldest first."""
    rows = conn.execute(
        "SELECT release FROM publications WHERE channel = ? AND target = ? ORDER BY id", (channel, target)
    )
    return [str(release) for (release,) in rows]


def carried_seqs(conn: sqlite3.Connection, *, channel: str, version: int) -> set[int]:
    """The records whose ledger row on ``channel`` was first carried by release ``version``."""
    rows = conn.execute(
        "SELECT seq FROM channel_records WHERE channel = ? AND version = ?", (channel, version)
    )
    return {int(seq) for (seq,) in rows}


def cut_at(conn: sqlite3.Connection, *, version: int) -> int | None:
    """When the co-op's release ``version`` was cut (its ``releases`` row, which no revision
    changes); None when there is no such release."""
    row = conn.execute("SELECT created_at FROM releases WHERE version = ?", (version,)).fetchone()
    return None if row is None else int(row[0])


def live_posts(conn: sqlite3.Connection, *, channel: str) -> list[tuple[int, str, str | None]]:
    """The posts still up on a microblog ``channel``: ``(seq, at:// URI, record uid)`` of its
    ledger rows published and not retracted, in seq order (uid None: the record is gone)."""
    rows = conn.execute(
        "SELECT r.seq, coalesce(r.ref, ''), c.uid FROM channel_records r"
        " LEFT JOIN contributions c ON c.seq = r.seq WHERE r.channel = ?"
        " AND r.published_at IS NOT NULL AND r.retracted_at IS NULL ORDER BY r.seq",
        (channel,),
    )
    return [(int(seq), str(ref), None if uid is None else str(uid)) for seq, ref, uid in rows]


def open_reviews(conn: sqlite3.Connection, *, channel: str, target: str) -> dict[str, str]:
    """The releases offered to ``target`` still under review: label -> the commit offered."""
    rows = conn.execute(
        "SELECT release, ref FROM publications WHERE channel = ? AND target = ? AND state = ? ORDER BY id",
        (channel, target, PublicationState.OPEN.value),
    )
    return {str(release): str(ref) for release, ref in rows}


def declined_reviews(conn: sqlite3.Connection, *, channel: str, target: str) -> set[str]:
    """The releases offered to ``target`` whose review was closed unmerged, and those still
    open: neither is offered again."""
    rows = conn.execute(
        "SELECT release FROM publications WHERE channel = ? AND target = ? AND state IN (?, ?)",
        (channel, target, PublicationState.CLOSED.value, PublicationState.OPEN.value),
    )
    return {str(release) for (release,) in rows}


def preview_rows(
    conn: sqlite3.Connection,
    *,
    embargo: Embargo,
    gated: Collection[str],
    joint: JointRules = NO_JOINT,
    version: int | None = None,
    uids: Collection[str] | None = None,
    highlighted_first: bool = True,
) -> Iterator[PreviewRow]:
    """Catalogue rows the public pages show now (the catalogue's own SQL rule for the embargo,
    the gated buckets and the joint actions) of released public records never withdrawn whose
    member lets the co-op announce them; oldest first, highlighted ones first if asked.

    ``version``: only records first released in it; ``uids``: only those.  Lazy, so a caller
    that needs a few stops early; the policy check and the AI-use filter are the caller's.
    """
    where = [
        "c.state = 'released'",
        "c.scope = 'public'",
        "c.withdrawn_at IS NULL",
        "m.announce = 1",
        "NOT EXISTS (SELECT 1 FROM tombstones t WHERE t.uid = k.uid)",
    ]
    params: list[object] = []
    if version is not None:
        where.append("k.released_in = ?")
        params.append(version)
    if uids is not None:
        where.append("k.uid IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(sorted(uids)))
    shown, shown_params = catalog_hidden_sql(embargo, gated, joint)
    order = "(h.seq IS NULL), k.seq" if highlighted_first else "k.seq"
    sql = (
        "SELECT k.seq, k.uid, k.title, k.license, k.label, k.released_in, k.created_at, k.language,"
        " k.tags, c.ai_use FROM catalog k JOIN contributions c ON c.seq = k.seq"
        " JOIN members m ON m.id = c.member_id LEFT JOIN highlights h ON h.seq = k.seq"
        f" WHERE {' AND '.join(where)}{shown} ORDER BY {order}"
    )
    for seq, uid, title, licence, label, released_in, created_at, language, tags, ai_use in conn.execute(
        sql, [*params, *shown_params]
    ):
        yield PreviewRow(
            seq=int(seq),
            uid=str(uid),
            title=str(title),
            license=str(licence),
            label=str(label),
            released_in=int(released_in),
            created_at=int(created_at),
            language=None if language is None else str(language),
            tags=tuple(json.loads(str(tags))),
            ai_use=str(ai_use),
        )


def revised_at(conn: sqlite3.Connection) -> dict[str, int]:
    """Release name -> when its latest revision was made (from the audit log; the co-op's own
    releases, not federated ones)."""
    rows = conn.execute(
        "SELECT json_extract(CAST(payload AS TEXT), '$.release'), max(at) FROM audit_log"
        " WHERE action = 'release.revise'"
        " AND coalesce(json_extract(CAST(payload AS TEXT), '$.federated'), 0) = 0 GROUP BY 1"
    )
    return {str(name): int(at) for name, at in rows if name is not None}


def first_audit_at(conn: sqlite3.Connection) -> int:
    """When the node began (its first audit entry); 0 before any."""
    row = conn.execute("SELECT at FROM audit_log ORDER BY seq LIMIT 1").fetchone()
    return 0 if row is None else int(row[0])
