"""Highlighted records: released records the admins pick for the Atom feed and the microblog.

A highlight names a record by its ``seq`` (table ``highlights``: when, by whom).  It is a
wish, not a disclosure: the feed and the microblog show a highlighted record only through
:func:`coop.node.channels.previews.previews`, so one that is later withdrawn, embargoed,
gated or held by a joint action simply drops out of them (and comes back when an embargo
lifts).  Only a record the public catalogue holds can be highlighted; a highlight can always
be removed, even of a record withdrawn since.  Each change is audited in its own transaction
(``record.highlight`` / ``record.unhighlight``).
"""

from __future__ import annotations

import sqlite3
from typing import Final

import msgspec

from coop.governance import Signer
from coop.node.collective.audit import AuditAction, audit
from coop.node.errors import NotFoundError

__all__ = [
    "FEED_HIGHLIGHTS",
    "Highlight",
    "HighlightChange",
    "highlighted",
    "highlights_listed",
    "is_highlighted",
    "set_highlight",
]

FEED_HIGHLIGHTS: Final = 50  # the newest highlights a reader of them looks at, at most
_SHOWN_UID: Final = 80  # characters of a uid named back in an error


class HighlightChange(msgspec.Struct, frozen=True):
    """What ``coop highlight`` did: the record's state now, and whether it changed."""

    uid: str
    highlighted: bool
    changed: bool


class Highlight(msgspec.Struct, frozen=True):
    """A highlighted record as the admins' dashboard lists it."""

    uid: str
    title: str | None  # the catalogue's; None once the catalogue no longer holds the record
    at: int


def set_highlight(
    conn: sqlite3.Connection, *, uid: str, on: bool, actor: str, at: int, signer: Signer
) -> HighlightChange:
    """Highlight ``uid`` (``on``) or remove its highlight, audited; call in a write transaction."""
    if on:
        row = conn.execute("SELECT seq FROM catalog WHERE uid = ?", (uid,)).fetchone()
        if row is None:
            raise NotFoundError(
                f"no published record {uid[:_SHOWN_UID]} (not released yet, not catalogued yet, "
                "or withdrawn): only a record the public catalogue holds can be highlighted",
                field="uid",
            )
        changed = conn.execute(
            "INSERT OR IGNORE INTO highlights (seq, at, actor) VALUES (?, ?, ?)", (row[0], at, actor)
        ).rowcount
    else:
        row = conn.execute("SELECT seq FROM contributions WHERE uid = ?", (uid,)).fetchone()
        if row is None:
            raise NotFoundError(f"no record {uid[:_SHOWN_UID]} on this node", field="uid")
        changed = conn.execute("DELETE FROM highlights WHERE seq = ?", (row[0],)).rowcount
    if changed:
        audit(
            conn,
            signer=signer,
            at=at,
            actor=actor,
            action=AuditAction.RECORD_HIGHLIGHT if on else AuditAction.RECORD_UNHIGHLIGHT,
            payload={"uid": uid},
        )
    return HighlightChange(uid=uid, highlighted=on, changed=bool(changed))


def highlighted(conn: sqlite3.Connection, *, limit: int = FEED_HIGHLIGHTS) -> dict[str, int]:
    """The newest highlighted records: uid -> when it was highlighted (newest first).

    Whether each may be shown is not decided here: pass the uids to ``previews``.
    """
    rows = conn.execute(
        "SELECT c.uid, h.at FROM highlights h JOIN contributions c ON c.seq = h.seq"
        " ORDER BY h.at DESC, h.seq DESC LIMIT ?",
        (limit,),
    )
    return {str(uid): int(at) for uid, at in rows}


def is_highlighted(conn: sqlite3.Connection, uid: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM highlights h JOIN contributions c ON c.seq = h.seq WHERE c.uid = ?", (uid,)
        ).fetchone()
        is not None
    )


def highlights_listed(conn: sqlite3.Connection, *, limit: int = FEED_HIGHLIGHTS) -> list[Highlight]:
    """The newest highlighted records with their catalogue titles, for the admins (newest first).

    A record withdrawn since is listed too (title ``None``): its highlight can still be removed.
    """
    rows = conn.execute(
        "SELECT c.uid, k.title, h.at FROM highlights h JOIN contributions c ON c.seq = h.seq"
        " LEFT JOIN catalog k ON k.seq = h.seq ORDER BY h.at DESC, h.seq DESC LIMIT ?",
        (limit,),
    )
    return [Highlight(uid=str(uid), title=title, at=int(at)) for uid, title, at in rows]
