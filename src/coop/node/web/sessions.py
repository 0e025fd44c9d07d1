"""Sign-in for the web pages: a member pastes their token once, the browser keeps a session cookie.

The cookie holds a random session id; the database keeps only its hash, the
member it belongs to, its expiry and the CSRF token every form must return.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from typing import Final

import msgspec

from coop.node.accounts import Member
from coop.node.store import member_from_row

__all__ = ["COOKIE", "WebSession", "check_csrf", "end_session", "find_session", "start_session"]

COOKIE: Final = "coop_session"
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


def check_csrf(session: WebSession, submitted: str | None) -> bool:
    return submitted is not None and hmac.compare_digest(session.csrf, submitted)
