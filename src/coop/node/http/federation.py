"""HTTP routes of federation: the signed peer protocol and the browsable mirrors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import msgspec
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery

from coop.governance import Audience
from coop.node.accounts import Member
from coop.node.errors import InputError, NotFoundError
from coop.node.runtime import Node

__all__ = ["federation_handlers"]

_ENCODER: Final = msgspec.json.Encoder()
_STEPS: Final = frozenset({"summary", "digest", "manifests", "push", "records"})
_MAX_PEER_BODY: Final = 256 * 1024 * 1024


def _json(value: object) -> Response[bytes]:
    return Response(_ENCODER.encode(value), media_type="application/json")


def _origin(text: str) -> str:
    if len(text) != 64 or any(ch not in "0123456789abcdef" for ch in text):
        raise NotFoundError(f"{text[:70]!r} is not a node id", field="origin")
    return text


def federation_handlers(node: Node, signed_in: Callable[..., Member]) -> list[HTTPRouteHandler]:
    service = node.federation

    @post("/federation/v1/{step:str}", status_code=200, request_max_body_size=_MAX_PEER_BODY)
    async def protocol(request: Request[Any, Any, Any], step: FromPath[str]) -> Response[bytes]:
        """One step of gossip with a pinned peer; the request must carry its RFC 9421 signature."""
        if step not in _STEPS:
            raise NotFoundError(f"no protocol step {step!r}", field="step")
        body = await request.body()
        headers = {k: v for k, v in request.headers.items()}
        server = request.scope.get("server")
        listening = None
        if server and server[1] is not None:
            host = f"[{server[0]}]" if ":" in str(server[0]) else str(server[0])
            listening = f"{request.url.scheme}://{host}:{server[1]}/"
        answer = await asyncio.to_thread(
            partial(service.handle, listening=listening),
            step,
            request.method,
            str(request.url),
            headers,
            body,
        )
        return Response(answer, media_type="application/json")

    @get("/api/v1/federation/identity", sync_to_thread=False)
    def identity() -> Response[bytes]:
        """This node's id (its first Ed25519 key), the key that signs now, and its fingerprint."""
        return _json(
            {
                "node_id": node.identity.node_id,
                "public_key": node.identity.public_key.hex(),
                "fingerprint": node.identity.fingerprint,
                "coop": node.config.node.name,
            }
        )

    @get("/api/v1/federation/origins", sync_to_thread=False)
    def origins() -> Response[bytes]:
        """Every co-op this node holds manifests of, with its chain head and what is mirrored."""
        return _json(service.origins())

    @get("/api/v1/federation/origins/{origin:str}", sync_to_thread=False)
    def origin(origin: FromPath[str]) -> Response[bytes]:
        key = _origin(origin)
        view = next((o for o in service.origins() if o.origin == key), None)
        if view is None:
            raise NotFoundError(f"no manifests from {key}", field="origin")
        return _json({"origin": view, "manifests": service.manifests(key)})

    @get("/api/v1/federation/origins/{origin:str}/manifests/{seq:int}", sync_to_thread=False)
    def manifest(
        request: Request[Any, Any, Any], origin: FromPath[str], seq: FromPath[int]
    ) -> Response[bytes]:
        """A manifest's DSSE envelope, byte for byte as it was signed and received (admins only).

        A signed manifest cannot be trimmed, and it lists federation-scope records, which the
        public must not see: peers get manifests through the signed protocol, the public sees
        each origin's head and switches at ``/api/v1/federation/origins/{origin}``.
        """
        signed_in(request, admin=True)
        return Response(service.envelope(_origin(origin), seq), media_type="application/json")

    @get("/api/v1/federation/origins/{origin:str}/records", sync_to_thread=False)
    def mirrored(
        request: Request[Any, Any, Any],
        origin: FromPath[str],
        after: FromQuery[str] = "",
        limit: FromQuery[int] = 200,
    ) -> Response[bytes]:
        """Records of that origin mirrored here (uid order; page with ``after``).

        Anyone sees the public ones a federated release may carry; an admin sees every row.
        """
        if not 1 <= limit <= 1000:
            raise InputError("limit is 1 to 1000", field="limit")
        audience = Audience.FEDERATED
        if request.headers.get("authorization"):
            signed_in(request, admin=True)
            audience = Audience.ADMIN
        return _json(service.mirrored(_origin(origin), after=after, limit=limit, audience=audience))

    @get("/api/v1/federation/peers", sync_to_thread=False)
    def peers(request: Request[Any, Any, Any]) -> Response[bytes]:
        signed_in(request, admin=True)
        return _json(service.peers())

    return [protocol, identity, origins, origin, manifest, mirrored, peers]
