"""Exports a member uploaded on the contribute page, kept (store-facing) until they pick a chat and share it.

An upload is raw and unredacted (every chat of an export), so it lives an hour at
most, only its member can read it back, and it is erased as soon as the chat is shared.
"""

from __future__ import annotations

import sqlite3

from coop.node.storage.writer import scrub_after_commit

__all__ = ["discard_upload", "load_upload", "save_upload"]


def save_upload(
    conn: sqlite3.Connection, *, upload_id: str, member_id: int, data: bytes, now: int, lifetime: int
) -> None:
    """Keep ``data`` for ``member_id`` under ``upload_id`` until ``now + lifetime``; expired ones go."""
    conn.execute("DELETE FROM web_uploads WHERE expires_at < ?", (now,))
    conn.execute(
        "INSERT INTO web_uploads (id, member_id, data, expires_at) VALUES (?, ?, ?, ?)",
        (upload_id, member_id, data, now + lifetime),
    )


def load_upload(conn: sqlite3.Connection, *, upload_id: str, member_id: int, now: int) -> bytes | None:
    """The member's own unexpired upload, or None."""
    row = conn.execute(
        "SELECT data FROM web_uploads WHERE id = ? AND member_id = ? AND expires_at >= ?",
        (upload_id, member_id, now),
    ).fetchone()
    return None if row is None else bytes(row[0])


def discard_upload(conn: sqlite3.Connection, *, member_id: int, upload_id: str) -> None:
    """Erase the member's upload (its pages scrubbed from the file after the commit)."""
    if conn.execute(
        "DELETE FROM web_uploads WHERE id = ? AND member_id = ?", (upload_id, member_id)
    ).rowcount:
        scrub_after_commit()
