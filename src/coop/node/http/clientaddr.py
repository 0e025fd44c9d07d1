"""The client's address: the peer, or what a trusted reverse proxy says in ``X-Forwarded-For``."""

from __future__ import annotations

import ipaddress
from typing import Any

from litestar import Request

__all__ = ["client_ip", "forwarded"]


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        return None


def client_ip(request: Request[Any, Any, Any], trusted: frozenset[str]) -> str | None:
    """The address rate limits and security logs use.

    Only when the peer is one of ``trusted`` is ``X-Forwarded-For`` read, right to
    left, skipping trusted hops: the first other address is the client.  A header
    sent by anyone else is ignored (a client cannot choose its own address).
    """
    peer = request.client.host if request.client else None
    if peer is None or peer not in trusted:
        return peer
    header = request.headers.get("x-forwarded-for")
    if not header:
        return peer
    for hop in reversed(header.split(",")):
        address = _address(hop)
        if address is None:
            return peer  # a malformed header from our own proxy: fall back to the proxy
        if address not in trusted:
            return address
    return peer


def forwarded(request: Request[Any, Any, Any]) -> bool:
    """Whether the request came through a proxy (it says so in a header)."""
    return any(name in request.headers for name in ("x-forwarded-for", "forwarded", "x-real-ip"))
