"""HTTP routes of federation: the signed peer protocol and the browsable mirrors.

The protocol's controller takes its body limit from the router it is mounted under
(:func:`protocol_router`): the largest step a peer may send depends on this node's config.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Annotated, Any, Final

from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.params import FromPath, FromQuery

from coop.governance import Audience
from coop.governance.envelope import Envelope
from coop.node.config import FederationConfig
from coop.node.errors import NotFoundError, PayloadTooLargeError, RequestTimeoutError
from coop.node.http import answers as a
from coop.node.http.access import Access
from coop.node.http.clientaddr import client_ip
from coop.node.http.controller import AreaController, json_response
from coop.node.http.openapi import ADMIN, documented
from coop.node.http.params import IdPath, whole_number, whole_query
from coop.node.peering.service import STEP_CAPS, FederationService, OriginView, PeerView
from coop.node.runtime import Node

__all__ = ["FederationController", "PeerProtocolController", "protocol_router"]

_STEPS: Final = frozenset(
    {"summary", "digest", "reconcile", "manifests", "push", "records", "roster", "joint"}
)


def _origin(text: str) -> str:
    if len(text) != 64 or any(ch not in "0123456789abcdef" for ch in text):
        raise NotFoundError(f"{text[:70]!r} is not a node id", field="origin")
    return text


async def _capped_body(request: Request[Any, Any, Any], cap: int, step: str, *, within: float) -> bytes:
    """The body, read as it streams in and refused at ``cap`` bytes (whatever Content-Length said)
    or when it is not all here ``within`` seconds (a peer dripping a byte now and then would
    otherwise hold the connection, and what it sent so far, for ever)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(within):
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise PayloadTooLargeError(f"a {step} request is at most {cap} bytes", field="body")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeoutError(
            f"a {step} request body must arrive within {within:g} s ({size} bytes came)", field="body"
        ) from None
    return b"".join(chunks)


def protocol_router(config: FederationConfig) -> Router:
    """The protocol's routes with this node's body limit: the largest step a peer may send."""
    largest = max(*STEP_CAPS.values(), config.max_response_bytes)
    return Router(path="/", route_handlers=[PeerProtocolController], request_max_body_size=largest)


class PeerProtocolController(AreaController):
    """The signed gossip protocol between pinned peers (RFC 9421 signatures)."""

    @post(
        "/federation/v1/{step:str}",
        status_code=200,
        operation_class=documented(Any, problems=(400, 401, 404, 408, 411, 413)),
    )
    async def protocol(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        federation: NamedDependency[FederationService],
        step: FromPath[str],
    ) -> Response[bytes]:
        """One step of gossip with a pinned peer; the request must carry its RFC 9421 signature.

        Nothing of the body is read before the signature headers name a pinned peer, verify
        (they cover the Content-Digest header) and are valid now (401), and a Content-Length within the step's cap is announced (411, 413);
        the body is then read with the cap enforced.
        """
        if step not in _STEPS:
            raise NotFoundError(f"no protocol step {step!r}", field="step")
        # A peer gives up on its own request after this long: reading its body longer serves no one.
        body_seconds = node.config.federation.request_timeout_seconds
        headers = {k: v for k, v in request.headers.items()}
        ip, agent = client_ip(request), request.headers.get("user-agent")
        declared = request.headers.get("content-length", "")
        length = int(declared) if declared.isascii() and declared.isdigit() else None
        server = request.scope.get("server")
        listening = None
        if server and server[1] is not None:
            host = f"[{server[0]}]" if ":" in str(server[0]) else str(server[0])
            listening = f"{request.url.scheme}://{host}:{server[1]}/"
        await asyncio.to_thread(
            partial(
                federation.admit,
                step,
                request.method,
                str(request.url),
                headers,
                length=length,
                listening=listening,
                ip=ip,
                user_agent=agent,
            )
        )
        if length is None:
            cap = federation.step_cap(step)
            raise HTTPException(
                status_code=411, detail=f"send Content-Length (a {step} request is at most {cap} bytes)"
            )
        body = await _capped_body(request, federation.step_cap(step), step, within=body_seconds)
        answer = await asyncio.to_thread(
            partial(federation.handle, listening=listening, ip=ip, user_agent=agent),
            step,
            request.method,
            str(request.url),
            headers,
            body,
        )
        return Response(answer, media_type="application/json")


class FederationController(AreaController):
    """This node's identity, the co-ops it mirrors, and its peers."""

    @get(
        "/api/v1/federation/identity", sync_to_thread=False, operation_class=documented(a.FederationIdentity)
    )
    def identity(self, node: NamedDependency[Node]) -> Response[bytes]:
        """This node's id (its first Ed25519 key), the key that signs now, and its fingerprint."""
        return json_response(
            {
                "node_id": node.identity.node_id,
                "public_key": node.identity.public_key.hex(),
                "fingerprint": node.identity.fingerprint,
                "coop": node.config.node.name,
            }
        )

    @get("/api/v1/federation/roster", sync_to_thread=True, operation_class=documented(dict[str, Any]))
    def roster(self, federation: NamedDependency[FederationService]) -> Response[bytes]:
        """The federation roster in force here (members, threshold, version, expiry; null without
        one) and the pending proposals with the signatures each still needs."""
        return json_response(federation.roster.view())

    @get("/api/v1/federation/origins", sync_to_thread=False, operation_class=documented(list[OriginView]))
    def origins(self, federation: NamedDependency[FederationService]) -> Response[bytes]:
        """Every co-op this node holds manifests of, with its chain head and what is mirrored."""
        return json_response(federation.origins())

    @get(
        "/api/v1/federation/origins/{origin:str}",
        sync_to_thread=False,
        operation_class=documented(a.OriginDetail, problems=(404,)),
    )
    def origin(
        self, federation: NamedDependency[FederationService], origin: FromPath[str]
    ) -> Response[bytes]:
        key = _origin(origin)
        view = next((o for o in federation.origins() if o.origin == key), None)
        if view is None:
            raise NotFoundError(f"no manifests from {key}", field="origin")
        return json_response({"origin": view, "manifests": federation.manifests(key)})

    @get(
        "/api/v1/federation/origins/{origin:str}/manifests/{seq:str}",
        sync_to_thread=False,
        operation_class=documented(Envelope, problems=(*ADMIN, 404)),
    )
    def manifest(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Access],
        federation: NamedDependency[FederationService],
        origin: FromPath[str],
        seq: IdPath,
    ) -> Response[bytes]:
        """A manifest's DSSE envelope, byte for byte as it was signed and received (admins only).

        A signed manifest cannot be trimmed, and it lists federation-scope records, which the
        public must not see: peers get manifests through the signed protocol, the public sees
        each origin's head and switches at ``/api/v1/federation/origins/{origin}``.
        """
        access.member(request, admin=True)
        key = _origin(origin)
        number = whole_number(seq, field="seq", low=1, error=NotFoundError)
        return Response(federation.envelope(key, number), media_type="application/json")

    @get(
        "/api/v1/federation/origins/{origin:str}/records",
        sync_to_thread=False,
        operation_class=documented(list[a.MirroredRecord], problems=(*ADMIN, 404, 422)),
    )
    def mirrored(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Access],
        federation: NamedDependency[FederationService],
        origin: FromPath[str],
        after: FromQuery[str] = "",
        limit: Annotated[str, whole_query("records per page", low=1, high=1000, default=200)] = "200",
    ) -> Response[bytes]:
        """Records of that origin mirrored here (uid order; page with ``after``).

        Anyone sees the public ones a federated release may carry; an admin sees every row.
        """
        count = whole_number(limit, field="limit", low=1, high=1000)
        audience = Audience.FEDERATED
        if request.headers.get("authorization"):
            access.member(request, admin=True)
            audience = Audience.ADMIN
        return json_response(
            federation.mirrored(_origin(origin), after=after, limit=count, audience=audience)
        )

    @get(
        "/api/v1/federation/peers",
        sync_to_thread=False,
        operation_class=documented(list[PeerView], problems=ADMIN),
    )
    def peers(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Access],
        federation: NamedDependency[FederationService],
    ) -> Response[bytes]:
        access.member(request, admin=True)
        return json_response(federation.peers())
