"""HEAD wherever GET works (RFC 9110 §9.3.2), for every route, pages and API alike.

Monitors probe ``/healthz`` with HEAD, link checkers probe pages, download tools
probe files.  A route that declares HEAD itself (the file downloads, which then
skip reading the file) gets the request as it came; every other GET route
answers a HEAD as its GET would, with the same status and headers and no body.
"""

from __future__ import annotations

from typing import Any, Final

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.exceptions import MethodNotAllowedException
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from litestar.utils import normalize_path

__all__ = ["HEAD_AS_GET", "HeadAsGet"]

HEAD_AS_GET: Final = "coop.head_as_get"  # scope key: this GET answers a HEAD, its body is dropped


class HeadAsGet:
    """ASGI wrapper: a HEAD to a route with no HEAD handler of its own runs its GET, body dropped."""

    def __init__(self, app: ASGIApp, litestar: Litestar) -> None:
        self.app = app
        self.litestar = litestar

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "HEAD" or self._routes_head(scope["path"]):
            await self.app(scope, receive, send)
            return
        as_get: Any = {**scope, "method": "GET", HEAD_AS_GET: True}

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # nothing of the body goes out; the last message ends the response
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(as_get, receive, without_body)

    def _routes_head(self, path: str) -> bool:
        """Whether the route at ``path`` answers HEAD itself (or nothing is there: let it 404)."""
        try:
            self.litestar.asgi_router.handle_routing(path=normalize_path(path), method="HEAD")
        except MethodNotAllowedException:
            return False
        except Exception:  # noqa: BLE001 - not found or unroutable: the app answers it as it would
            return True
        return True
