"""The client's address, the scheme and the host: the connection's, or what a trusted reverse proxy says.

One place for both servers (granian and uvicorn; uvicorn's own proxy-header
handling is turned off): :class:`TrustedProxies` wraps the app and, only when
the TCP peer is in ``node.trusted_proxies``, rewrites the request's scope from
``X-Forwarded-For``/``-Proto``/``-Host`` (or, without ``X-Forwarded-For``, from
RFC 7239 ``Forwarded``).  Everything after it (rate limits, the security log,
the forms' origin check, the session cookie's ``Secure``) reads the scope and
sees the browser's view: ``https://host`` and the client's own address.  A
header sent by anyone else is left unread (a client cannot choose its own
address, scheme or host).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any, Final

from litestar import Request
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

__all__ = ["TrustedProxies", "client_ip", "forwarded", "resolve_scope"]

_HOST: Final = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?"
)
_FORWARDED_PAIR: Final = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*')


def _address(text: str) -> str | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # [v6] or [v6]:port (Forwarded)
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # v4:port (Forwarded)
        text = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str] | None:
    """Every comma-separated value of a header (repeated headers joined), or None when absent."""
    found = [value.decode("latin-1") for key, value in headers if key.lower() == name]
    if not found:
        return None
    return [part.strip() for part in ",".join(found).split(",")]


def _forwarded(headers: Iterable[tuple[bytes, bytes]]) -> list[dict[str, str]] | None:
    """RFC 7239 ``Forwarded``: one dict per element (hop), oldest first."""
    found = [value.decode("latin-1") for key, value in headers if key.lower() == b"forwarded"]
    if not found:
        return None
    elements: list[dict[str, str]] = []
    for element in re.split(r',(?=(?:[^"]*"[^"]*")*[^"]*$)', ",".join(found)):
        pairs: dict[str, str] = {}
        for pair in element.split(";"):
            match = _FORWARDED_PAIR.fullmatch(pair)
            if match:
                pairs[match.group(1).lower()] = match.group(2).strip('"')
        elements.append(pairs)
    return elements


def _client(hops: list[str], peer: str, trusted: frozenset[str]) -> str:
    """Right to left, skipping trusted hops: the first other address is the client."""
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return peer  # a malformed value from our own proxy: fall back to the proxy
        if address not in trusted:
            return address
    return peer


def resolve_scope(scope: Scope, trusted: frozenset[str]) -> None:
    """Rewrite ``scope`` (client, scheme, Host) in place from a trusted proxy's headers; else leave it."""
    client = scope.get("client")
    peer = _address(client[0]) if client else None
    if peer is None or peer not in trusted:
        return
    raw: list[tuple[bytes, bytes]] = list(scope.get("headers") or ())
    hops = _values(raw, b"x-forwarded-for")
    proto = _values(raw, b"x-forwarded-proto")
    host = _values(raw, b"x-forwarded-host")
    if hops is None:
        elements = _forwarded(raw)
        if elements:
            hops = [e["for"] for e in elements if "for" in e]
            last = elements[-1]
            proto = [last["proto"]] if "proto" in last else proto
            host = [last["host"]] if "host" in last else host
    if hops:
        scope["client"] = (_client(hops, peer, trusted), 0)
    # The nearest proxy's word on scheme and host is the last value.
    if proto and proto[-1].lower() in ("http", "https"):
        secure = proto[-1].lower() == "https"
        if scope["type"] == ScopeType.WEBSOCKET:
            scope["scheme"] = "wss" if secure else "ws"
        else:
            scope["scheme"] = "https" if secure else "http"
    if host and _HOST.fullmatch(host[-1]):
        value = host[-1].encode("ascii")
        scope["headers"] = [(k, v) for k, v in raw if k.lower() != b"host"] + [(b"host", value)]


class TrustedProxies:
    """ASGI wrapper: requests from ``trusted`` proxies carry the client's address, scheme and host."""

    def __init__(self, app: ASGIApp, trusted: frozenset[str]) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.trusted and scope["type"] in (ScopeType.HTTP, ScopeType.WEBSOCKET):
            resolve_scope(scope, self.trusted)
        await self.app(scope, receive, send)


def client_ip(request: Request[Any, Any, Any]) -> str | None:
    """The address rate limits and security logs use (a trusted proxy's client already resolved)."""
    return request.client.host if request.client else None


def forwarded(request: Request[Any, Any, Any]) -> bool:
    """Whether the request came through a proxy (it says so in a header)."""
    return any(name in request.headers for name in ("x-forwarded-for", "forwarded", "x-real-ip"))
