"""HTTP routes of federated evaluation: the local interface for the SuperNode, and admin review."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
from collections.abc import Callable
from typing import Any, Final

import msgspec
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from coop.eval.report import NodeAnswer
from coop.node.errors import AuthError, ForbiddenError, InputError
from coop.node.evaluation.service import EvalRequestView
from coop.node.http import answers as a
from coop.node.http.clientaddr import forwarded
from coop.node.http.openapi import ADMIN, documented
from coop.node.http.problems import decode_body
from coop.node.members.accounts import Member
from coop.node.runtime import Node

__all__ = ["evaluation_handlers"]

_ENCODER: Final = msgspec.json.Encoder()
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1"})
_MAX_ARTIFACT: Final = 512 * 1024 * 1024


class LocalEvalRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The signed request envelope (as JSON) and the model artifact (base64)."""

    request: msgspec.Raw
    artifact: str


_LOCAL: Final = msgspec.json.Decoder(LocalEvalRequest)


def _json(value: object) -> Response[bytes]:
    return Response(_ENCODER.encode(value), media_type="application/json")


def evaluation_handlers(node: Node, signed_in: Callable[..., Member]) -> list[HTTPRouteHandler]:
    evaluation = node.evaluation

    def local_only(request: Request[Any, Any, Any]) -> None:
        """Only a process on this host holding the eval token may call the local interface."""
        host = request.client.host if request.client else ""
        if host not in _LOOPBACK or forwarded(request):
            # A reverse proxy on this host connects from loopback too: what it forwards is not local.
            raise ForbiddenError("the local evaluation interface answers on loopback only", field="client")
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), evaluation.token):
            raise AuthError("the eval token is missing or wrong", field="Authorization")

    @get(
        "/api/v1/eval/local/identity",
        sync_to_thread=False,
        operation_class=documented(a.LocalIdentity, problems=(401, 403)),
    )
    def identity(request: Request[Any, Any, Any]) -> Response[bytes]:
        local_only(request)
        return _json({"node_id": node.identity.node_id})

    @post(
        "/api/v1/eval/local",
        status_code=200,
        request_max_body_size=_MAX_ARTIFACT,
        operation_class=documented(NodeAnswer, body=LocalEvalRequest, problems=(401, 403)),
    )
    async def answer(request: Request[Any, Any, Any]) -> Response[bytes]:
        """Evaluate inside the node; answer with aggregates and a signed attestation, or a decline."""
        local_only(request)
        data = decode_body(_LOCAL, await request.body())
        try:
            artifact = base64.b64decode(data.artifact, validate=True)
        except (binascii.Error, ValueError):
            raise InputError("the artifact is not base64", field="artifact") from None
        result = await asyncio.to_thread(evaluation.answer, bytes(data.request), artifact)
        return _json(result)

    @get(
        "/api/v1/admin/eval/requests",
        sync_to_thread=False,
        operation_class=documented(list[EvalRequestView], problems=ADMIN),
    )
    def requests(request: Request[Any, Any, Any]) -> Response[bytes]:
        signed_in(request, admin=True)
        return _json(evaluation.requests())

    @post(
        "/api/v1/admin/eval/requests/{digest:str}/{decision:str}",
        status_code=200,
        operation_class=documented(EvalRequestView, problems=(*ADMIN, 404, 409, 422)),
    )
    async def decide(
        request: Request[Any, Any, Any], digest: FromPath[str], decision: FromPath[str]
    ) -> Response[bytes]:
        admin = signed_in(request, admin=True)
        if decision not in ("approve", "refuse"):
            raise InputError("decide with approve or refuse", field="decision")
        view = await asyncio.to_thread(
            evaluation.decide, digest, approve=decision == "approve", admin=admin.name
        )
        return _json(view)

    return [identity, answer, requests, decide]
