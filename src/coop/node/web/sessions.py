"""Sign-in for the web pages: a member pastes their token once, the browser keeps a session cookie.

The cookie holds a random session id; the database keeps only its hash, the
member it belongs to, its expiry and the CSRF token every form must return.
Before there is a session, the sign-in form is protected by a double-submit
token: the sign-in page sets it in a cookie only this node's pages can read
back into the form (login CSRF: another site must not sign a victim in as the
attacker, whose account would then receive what the victim shares).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from typing import Final

import msgspec

from coop.node.members.accounts import Member
from coop.node.storage.store import member_from_row

__all__ = [
    "COOKIE",
    "LOGIN_COOKIE",
    "LOGIN_LIFETIME",
    "WebSession",
    "check_csrf",
    "check_login_token",
    "end_session",
    "find_session",
    "login_token",
    "start_session",
]

COOKIE: Final = "coop_session"
LIFETIME: Final = 30 * 86_400
LOGIN_COOKIE: Final = "coop_login"
LOGIN_LIFETIME: Final = 86_400
_LOGIN_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{32}")


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


def _same(expected: str, submitted: object) -> bool:
    # As bytes: compare_digest refuses a str with non-ASCII characters (a 500, not a 403).
    return isinstance(submitted, str) and hmac.compare_digest(expected.encode(), submitted.encode())


def check_csrf(session: WebSession, submitted: object) -> bool:
    return _same(session.csrf, submitted)


def login_token(cookie: str | None) -> tuple[str, bool]:
    """The sign-in form's token: the browser's cookie when it holds a well-formed one, else a new one.

    Returns the token and whether it is new (the page must then set the cookie).
    """
    if cookie is not None and _LOGIN_TOKEN.fullmatch(cookie):
        return cookie, False
    return secrets.token_urlsafe(24), True


def check_login_token(cookie: str | None, submitted: object) -> bool:
    """Double submit: the sign-in form returns the token the sign-in page put in the browser's cookie."""
    return cookie is not None and _LOGIN_TOKEN.fullmatch(cookie) is not None and _same(cookie, submitted)
