"""What every area's controller shares: routes listed in the order written, JSON answers, JSON bodies.

Handlers answer with bytes they encode themselves (msgspec), so the framework serializes
nothing; :mod:`coop.node.http.openapi` documents the real shapes.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from litestar import Controller, Request, Response
from litestar.handlers import BaseRouteHandler

from coop.node.errors import MediaTypeError

__all__ = ["JSON", "AreaController", "json_response", "require_json"]

JSON: Final = "application/json"
_ENCODER: Final = msgspec.json.Encoder()


class AreaController(Controller):
    """A controller whose routes keep the order they are written in (the OpenAPI document's order).

    Litestar sorts a controller's handlers by an identifier made of their names; the
    document (and the page at /schema) would then list an area's operations alphabetically.
    """

    def get_route_handlers(self) -> list[BaseRouteHandler]:
        handlers = super().get_route_handlers()
        handlers.sort(key=lambda h: getattr(h.fn, "__func__", h.fn).__code__.co_firstlineno)
        return handlers


def json_response(value: object, status: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
    """``value`` encoded by msgspec, as application/json."""
    return Response(_ENCODER.encode(value), status_code=status, media_type=JSON, headers=headers)


def require_json(request: Request[Any, Any, Any]) -> None:
    """415 unless the body is declared application/json (or a ``+json`` type)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != JSON and not (media.startswith("application/") and media.endswith("+json")):
        raise MediaTypeError(
            f"send the body as {JSON} (got {media or 'no Content-Type'})", field="Content-Type"
        )
