"""Members' web sign-in sessions as stored: the hash of a random id, its member, expiry and CSRF token.

The web pages (:mod:`coop.node.web.sessions`) hand the raw id to the browser as a
cookie; the database keeps only its SHA-256, so a copy of the database signs no one in.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from typing import Final

import msgspec

from coop.node.members.accounts import Member
from coop.node.members.repository import member_from_row

__all__ = ["LIFETIME", "WebSession", "end_session", "find_session", "start_session"]

LIFETIME: Final = 30 * 86_400


class WebSession(msgspec.Struct, frozen=True):
    member: Member
    csrf: str


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def start_session(conn: sqlite3.Connection, member: Member, *, now: int) -> str:
    """A new session for ``member``; returns the raw id for the cookie (shown nowhere else)."""
    raw = secrets.token_urlsafe(32)
    conn.execute("DELETE FROM web_sessions WHERE expires_at < ?", (now,))
    conn.execute(
        "INSERT INTO web_sessions (id_hash, member_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        (_hash(raw), member.id, secrets.token_urlsafe(24), now, now + LIFETIME),
    )
    return raw


def find_session(conn: sqlite3.Connection, raw: str, *, now: int) -> WebSession | None:
    row = conn.execute(
        "SELECT m.id, m.name, m.role, m.provider, m.contributor_hash, s.csrf FROM web_sessions s"
        " JOIN members m ON m.id = s.member_id WHERE s.id_hash = ? AND s.expires_at >= ?",
        (_hash(raw), now),
    ).fetchone()
    if row is None:
        return None
    return WebSession(member=member_from_row(row[:5]), csrf=row[5])


def end_session(conn: sqlite3.Connection, raw: str) -> None:
    conn.execute("DELETE FROM web_sessions WHERE id_hash = ?", (_hash(raw),))
