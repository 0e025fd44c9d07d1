"""The download register: every gated file served, who (handle), what, when.

A row is committed before the file's first byte is sent, so the register never misses a
download (it may list one the client broke off).  The co-op's admins read all of it; a
grantee reads their own rows.
"""

from __future__ import annotations

import sqlite3
from typing import Final

import msgspec

__all__ = ["HOUR", "DownloadView", "downloads_since", "list_downloads", "record_download"]

HOUR: Final = 3600
_SHOWN: Final = 1000  # rows one listing returns, newest first


class DownloadView(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    request_id: int
    who: str  # the grantee's handle
    release: str
    path: str
    bytes: int
    at: int


def record_download(
    conn: sqlite3.Connection, *, request_id: int, member_id: int, release: str, path: str, size: int, at: int
) -> int:
    cur = conn.execute(
        "INSERT INTO access_downloads (request_id, member_id, release, path, bytes, at) VALUES (?, ?, ?, ?, ?, ?)",
        (request_id, member_id, release, path, size, at),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def downloads_since(conn: sqlite3.Connection, member_id: int, since: int) -> list[int]:
    """When ``member_id`` downloaded since ``since``, oldest first (the hourly limit counts them)."""
    return [
        int(at)
        for (at,) in conn.execute(
            "SELECT at FROM access_downloads WHERE member_id = ? AND at > ? ORDER BY at", (member_id, since)
        )
    ]


def list_downloads(
    conn: sqlite3.Connection, *, member_id: int | None = None, limit: int = _SHOWN
) -> list[DownloadView]:
    """The register, newest first: everyone's, or one grantee's."""
    where, params = ("WHERE d.member_id = ?", (member_id,)) if member_id is not None else ("", ())
    rows = conn.execute(
        "SELECT d.id, d.request_id, m.name, d.release, d.path, d.bytes, d.at FROM access_downloads d"
        f" JOIN members m ON m.id = d.member_id {where} ORDER BY d.id DESC LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [
        DownloadView(id=i, request_id=r, who=w, release=rel, path=p, bytes=b, at=at)
        for i, r, w, rel, p, b, at in rows
    ]
