"""Who is calling and how often: credentials checked and rate-limited, per credential and per address.

:class:`Access` reaches the controllers by dependency injection (``access``); a handler
calls ``access.member(request)`` first, so a refused credential is answered before
anything of the request is read.  :class:`AddressLimit` runs before every request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from litestar import Request

from coop.node.errors import RateLimitedError
from coop.node.http.auth import Authenticator
from coop.node.http.clientaddr import client_ip
from coop.node.http.ratelimit import RateLimiter
from coop.node.members.accounts import Integration, Member

__all__ = ["Access", "AddressLimit"]


class Access:
    """Member tokens and integration keys, looked up and then rate-limited per credential."""

    def __init__(
        self,
        authenticator: Authenticator,
        limiter: RateLimiter,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.authenticator = authenticator
        self.limiter = limiter
        self.clock = clock

    def limit(self, key: str) -> None:
        """Spend one of the credential's requests, or refuse (429 with Retry-After)."""
        wait = self.limiter.allow(key, self.clock())
        if wait:
            raise RateLimitedError(
                f"too many requests with this credential; retry in {wait} s", retry_after=wait
            )

    def member(self, request: Request[Any, Any, Any], *, admin: bool = False) -> Member:
        """The signed-in member (an admin when ``admin``): 401, 403 or 429 otherwise."""
        member = self.authenticator.member(request, admin=admin)
        self.limit(f"m{member.id}")
        return member

    def integration(self, request: Request[Any, Any, Any]) -> Integration:
        """The integration whose API key the request carries: 401 or 429 otherwise."""
        integration = self.authenticator.integration(request)
        self.limit(f"i{integration.id}")
        return integration


class AddressLimit:
    """The per-address limit, run before every request (``before_request``)."""

    def __init__(self, limiter: RateLimiter, clock: Callable[[], float] = time.monotonic) -> None:
        self.limiter = limiter
        self.clock = clock

    async def before_request(self, request: Request[Any, Any, Any]) -> None:
        host = client_ip(request) or "unknown"
        wait = self.limiter.allow(host, self.clock())
        if wait:
            raise RateLimitedError(f"too many requests from {host}; retry in {wait} s", retry_after=wait)
