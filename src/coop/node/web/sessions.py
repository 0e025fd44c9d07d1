"""Sign-in for the web pages: a member pastes their token once, the browser keeps a session cookie.

The cookie holds a random session id; the database keeps only its hash, the
member it belongs to, its expiry and the CSRF token every form must return
(stored by :mod:`coop.node.members.sessions`).  Before there is a session, the
sign-in form is protected by a double-submit token: the sign-in page sets it in
a cookie only this node's pages can read back into the form (login CSRF: another
site must not sign a victim in as the attacker, whose account would then receive
what the victim shares).
"""

from __future__ import annotations

import hmac
import re
import secrets
from typing import Final

from coop.node.members.sessions import WebSession

__all__ = [
    "COOKIE",
    "LOGIN_COOKIE",
    "LOGIN_LIFETIME",
    "check_csrf",
    "check_login_token",
    "login_token",
]

COOKIE: Final = "coop_session"
LOGIN_COOKIE: Final = "coop_login"
LOGIN_LIFETIME: Final = 86_400
_LOGIN_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{32}")


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
