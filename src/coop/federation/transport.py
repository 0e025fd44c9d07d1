"""The one transport interface between nodes, and its in-memory twin.

A transport sends one request and returns the whole response, or raises a
:class:`~coop.federation.errors.PeerError`: unreachable, too slow (an
overall deadline, not a per-read one), or a response over its byte cap.
The httpx adapter lives in :mod:`coop.federation.httpx_transport`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import msgspec

from coop.federation.errors import PeerUnreachableError, ResponseTooLargeError

__all__ = ["MemoryTransport", "Request", "Response", "Transport"]


class Request(msgspec.Struct, frozen=True):
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


class Response(msgspec.Struct, frozen=True):
    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    def send(self, request: Request, *, timeout: float, max_bytes: int) -> Response: ...


Handler = Callable[[Request], Response]


class MemoryTransport:
    """Routes requests to in-process handlers by URL prefix; the simulator adds loss and partitions."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.sent = 0
        self.bytes = 0

    def send(self, request: Request, *, timeout: float, max_bytes: int) -> Response:
        for prefix, handler in self.routes.items():
            if request.url.startswith(prefix):
                self.sent += 1
                self.bytes += len(request.body)
                response = handler(request)
                if len(response.body) > max_bytes:
                    raise ResponseTooLargeError(f"response over {max_bytes} bytes from {prefix}")
                self.bytes += len(response.body)
                return response
        raise PeerUnreachableError(f"no route to {request.url}")
