"""What every response gets as it leaves: the security headers, and (when asked) an access-log line.

Both are ``before_send`` hooks, so they hold for pages, the API, static
files, release files and every error (404s the router raises included).
The Content-Security-Policy is one constant: a page that needs more (the API
docs at ``/schema``) changes it here, from ``'self'`` only; a response that
sets its own CSP keeps it.
"""

from __future__ import annotations

import logging
from typing import Final

from litestar.types import Message, Scope

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "SECURITY_HEADERS",
    "access_log",
    "credentials_not_cached",
    "security_headers",
]

CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # The templates size a few elements in style attributes (a progress bar's width): attributes
        # only, never a <style> element or a script; Jinja escapes everything put in them.
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS: Final[tuple[tuple[bytes, bytes], ...]] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode("ascii")),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    # Same-origin requests keep the full Referer (and forms their Origin); other sites get nothing.
    (b"referrer-policy", b"same-origin"),
)

_access: Final = logging.getLogger("coop.access")


async def security_headers(message: Message, scope: Scope) -> None:
    """Add each security header the response does not set itself."""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers") or ())
    present = {name.lower() for name, _ in headers}
    headers.extend(header for header in SECURITY_HEADERS if header[0] not in present)
    message["headers"] = headers


_SESSION_COOKIE: Final = b"coop_session="  # coop.node.web.sessions.COOKIE (http/ does not import web/)


async def credentials_not_cached(message: Message, scope: Scope) -> None:
    """An answer to a request that carried credentials is nobody else's: ``private, no-store``.

    A shared cache in front of the node (nginx ``proxy_cache`` ignores ``Authorization``
    when told to cache) must never keep a member's chat or an admin's quarantine; a
    response that sets its own Cache-Control keeps it.
    """
    if message["type"] != "http.response.start":
        return
    request_headers = scope.get("headers") or ()
    credentialed = any(
        name in (b"authorization", b"x-api-key") or (name == b"cookie" and _SESSION_COOKIE in value)
        for name, value in request_headers
    )
    if not credentialed:
        return
    headers = list(message.get("headers") or ())
    if not any(name.lower() == b"cache-control" for name, _ in headers):
        headers.append((b"cache-control", b"private, no-store"))
        message["headers"] = headers


async def access_log(message: Message, scope: Scope) -> None:
    """One line per response: client, method, path (never the query), status.

    The path is the decoded one, as a person reads it; the node's log formatter
    escapes what a client put in it (:mod:`coop.node.logs`).
    """
    if message["type"] != "http.response.start":
        return
    client = scope.get("client")
    _access.info(
        '%s "%s %s" %d',
        client[0] if client else "-",
        scope.get("method", "-"),
        scope.get("path", ""),
        message["status"],
    )
