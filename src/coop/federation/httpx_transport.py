"""The transport adapter over httpx: the only module here that touches the network.

One wall-clock deadline covers a whole exchange: connecting, sending, the
response headers and the body.  httpx's own timeouts are per read, which a
peer dripping one byte a second never trips (in the headers as in the body),
so each request runs as a task on the adapter's own event loop under
``asyncio.timeout``, which cancels it wherever it waits.  Requests from many
threads share that loop and its connection pool, so gossip with several peers
runs concurrently.  A response larger than ``max_bytes`` is aborted at the
cap.  httpx's errors are translated once, here.

Connections are kept alive per peer between requests and between gossip rounds
(so keep one transport for as long as the rounds run): an idle exchange is then
one request on an open connection, not a TCP and HTTP handshake each time.
httpx's default keep-alive expiry (5 s) equals the default gossip interval, so
each connection expired just before it was needed; ``keepalive_expiry`` is set
longer, and below granian's 30 s limit on an idle connection (its
``header_read_timeout``), so the server is not the one closing it under us.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Final

import httpx

from coop.federation.errors import PeerTimeoutError, PeerUnreachableError, ResponseTooLargeError
from coop.federation.transport import Request, Response

__all__ = ["KEEPALIVE_SECONDS", "HttpxTransport"]

# How long past its own deadline a caller waits for a task to come back (it is cancelled at the
# deadline; this only guards against a loop that stopped answering).
_GRACE: Final = 5.0
# How long an idle connection to a peer is kept for the next request: past a few gossip intervals,
# short of the 30 s after which granian (the node's default server) drops an idle connection.
KEEPALIVE_SECONDS: Final = 25.0


class HttpxTransport:
    """Sends requests from any thread; each ends by its deadline.  Close it when done."""

    def __init__(
        self,
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 2.0,
        max_connections: int = 16,
        keepalive_expiry: float = KEEPALIVE_SECONDS,
    ) -> None:
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=keepalive_expiry,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="coop-transport", daemon=True)
        self._thread.start()
        self._closed = False
        # Made on its loop: the pool's connections and locks belong to that loop.
        self._client = asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(timeout=_GRACE)

    async def _open(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self._timeout,
            limits=self._limits,
            follow_redirects=False,
            headers={"User-Agent": "coop-flywheel-gossip", "Accept-Encoding": "identity"},
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=_GRACE)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=_GRACE)
            if not self._thread.is_alive():
                self._loop.close()

    async def _shutdown(self) -> None:
        await self._client.aclose()
        await self._loop.shutdown_asyncgens()

    def send(self, request: Request, *, timeout: float, max_bytes: int) -> Response:
        if self._closed:
            raise PeerUnreachableError(f"{request.url}: the transport is closed")
        future = asyncio.run_coroutine_threadsafe(self._exchange(request, timeout, max_bytes), self._loop)
        try:
            return future.result(timeout=timeout + _GRACE)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise PeerTimeoutError(f"{request.url} did not finish within {timeout:g} s") from None

    async def _exchange(self, request: Request, timeout: float, max_bytes: int) -> Response:
        try:
            async with asyncio.timeout(timeout):
                return await self._stream(request, max_bytes)
        except TimeoutError:
            raise PeerTimeoutError(f"{request.url} did not finish within {timeout:g} s") from None
        except httpx.TimeoutException as exc:
            raise PeerTimeoutError(f"{request.url}: {exc.__class__.__name__}") from exc
        except httpx.HTTPError as exc:
            raise PeerUnreachableError(f"{request.url}: {exc}") from exc

    async def _stream(self, request: Request, max_bytes: int) -> Response:
        chunks: list[bytes] = []
        size = 0
        async with self._client.stream(
            request.method, request.url, headers=dict(request.headers), content=request.body
        ) as response:
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise ResponseTooLargeError(f"{request.url} announced {declared} bytes (cap {max_bytes})")
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise ResponseTooLargeError(f"{request.url} sent over {max_bytes} bytes")
                chunks.append(chunk)
            return Response(
                status=response.status_code, headers=dict(response.headers), body=b"".join(chunks)
            )
