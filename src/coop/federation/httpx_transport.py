"""The transport adapter over httpx: the only module here that touches the network.

Caps are enforced while streaming: a response larger than ``max_bytes`` is
aborted at the cap, and a peer answering one byte per second is cut off at
the overall ``timeout`` (httpx's own timeouts are per read, which a slow
drip never trips).  httpx's errors are translated once, here.
"""

from __future__ import annotations

import time

import httpx

from coop.federation.errors import PeerTimeoutError, PeerUnreachableError, ResponseTooLargeError
from coop.federation.transport import Request, Response

__all__ = ["HttpxTransport"]


class HttpxTransport:
    def __init__(self, *, connect_timeout: float = 3.0, read_timeout: float = 2.0) -> None:
        self._client = httpx.Client(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            follow_redirects=False,
            headers={"User-Agent": "coop-flywheel-gossip", "Accept-Encoding": "identity"},
        )

    def close(self) -> None:
        self._client.close()

    def send(self, request: Request, *, timeout: float, max_bytes: int) -> Response:
        started = time.monotonic()
        chunks: list[bytes] = []
        size = 0
        try:
            with self._client.stream(
                request.method, request.url, headers=dict(request.headers), content=request.body
            ) as response:
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                    raise ResponseTooLargeError(f"{request.url} announced {declared} bytes (cap {max_bytes})")
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise ResponseTooLargeError(f"{request.url} sent over {max_bytes} bytes")
                    if time.monotonic() - started > timeout:
                        raise PeerTimeoutError(f"{request.url} did not finish within {timeout:g} s")
                    chunks.append(chunk)
                return Response(
                    status=response.status_code, headers=dict(response.headers), body=b"".join(chunks)
                )
        except httpx.TimeoutException as exc:
            raise PeerTimeoutError(f"{request.url}: {exc.__class__.__name__}") from exc
        except httpx.HTTPError as exc:
            raise PeerUnreachableError(f"{request.url}: {exc}") from exc
