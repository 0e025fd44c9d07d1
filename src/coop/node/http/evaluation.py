"""HTTP routes of federated evaluation: the local interface for the SuperNode, and admin review."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import math
from typing import Any, Final

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from coop.eval.report import NodeAnswer
from coop.eval.request import MAX_REQUEST_BYTES
from coop.node.config import EvalConfig
from coop.node.errors import AuthError, ForbiddenError, InputError, PayloadTooLargeError, RequestTimeoutError
from coop.node.evaluation.service import EvalRequestView, Evaluation
from coop.node.http import answers as a
from coop.node.http.access import Access
from coop.node.http.clientaddr import forwarded
from coop.node.http.controller import AreaController, json_response
from coop.node.http.openapi import ADMIN, documented
from coop.node.http.problems import decode_body
from coop.node.runtime import Node

__all__ = ["EvaluationController", "LocalEvalRequest", "b64decode_sliced", "local_body_cap", "local_only"]

_LOOPBACK: Final = frozenset({"127.0.0.1", "::1"})
# Room in a local eval body besides the artifact's base64: the request envelope and the JSON around it.
_BODY_SLACK: Final = 2 * MAX_REQUEST_BYTES + 4096


class LocalEvalRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The signed request envelope (as JSON) and the model artifact (base64)."""

    request: msgspec.Raw
    artifact: str


_LOCAL: Final = msgspec.json.Decoder(LocalEvalRequest)
# base64 is decoded this many characters at a time (a multiple of 4): one call holds the GIL
# for ~1 ms, so the event loop and the store's writer get it back between slices.
_B64_SLICE: Final = 1 << 18


def b64decode_sliced(text: str) -> bytes:
    """``base64.b64decode(text, validate=True)``, a slice at a time.

    A 12 MB model is ~0.1 s of base64 in one C call that holds the GIL throughout: every
    ingest request waited for it.  Slices before the last may hold no padding (it may only
    end the text); the last one is validated as the whole would be.
    """
    last = max(0, (len(text) - 1) // _B64_SLICE * _B64_SLICE)
    parts = []
    for start in range(0, last, _B64_SLICE):
        piece = text[start : start + _B64_SLICE]
        if "=" in piece:
            raise binascii.Error("padding before the end")
        parts.append(base64.b64decode(piece, validate=True))
    parts.append(base64.b64decode(text[last:], validate=True))
    return b"".join(parts)


def _decode_local(body: bytes) -> tuple[bytes, bytes]:
    """The request envelope and the artifact's bytes (run off the event loop: ~0.15 s for 12 MB)."""
    data = decode_body(_LOCAL, body)
    try:
        artifact = b64decode_sliced(data.artifact)
    except (binascii.Error, ValueError):
        raise InputError("the artifact is not base64", field="artifact") from None
    return bytes(data.request), artifact


def local_body_cap(config: EvalConfig) -> int:
    """The largest local eval body: a model of ``eval.max_model_mb`` in base64, plus the request."""
    return 4 * math.ceil(config.max_model_mb * 1024 * 1024 / 3) + _BODY_SLACK


async def _capped_body(request: Request[Any, Any, Any], config: EvalConfig) -> bytes:
    """The body, refused (413) before reading when its Content-Length is over the cap and while
    reading when it grows over it; it must all arrive within ``eval.timeout_s`` (408)."""
    cap = local_body_cap(config)
    mb = config.max_model_mb
    too_large = f"a local eval body is at most {cap} bytes (a model of eval.max_model_mb = {mb} in base64)"
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > cap:
        raise PayloadTooLargeError(too_large, field="body")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(config.timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise PayloadTooLargeError(too_large, field="body")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeoutError(
            f"a local eval body must arrive within eval.timeout_s = {config.timeout_s:g} s", field="body"
        ) from None
    return b"".join(chunks)


def local_only(request: Request[Any, Any, Any], token: str) -> None:
    """Only a process on this host holding the eval token may call the local interface."""
    host = request.client.host if request.client else ""
    if host not in _LOOPBACK or forwarded(request):
        # A reverse proxy on this host connects from loopback too: what it forwards is not local.
        raise ForbiddenError("the local evaluation interface answers on loopback only", field="client")
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
        raise AuthError("the eval token is missing or wrong", field="Authorization")


class EvaluationController(AreaController):
    """The SuperNode's local interface (loopback and the eval token), and the admins' review."""

    @get(
        "/api/v1/eval/local/identity",
        sync_to_thread=False,
        operation_class=documented(a.LocalIdentity, problems=(401, 403)),
    )
    def identity(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        evaluation: NamedDependency[Evaluation],
    ) -> Response[bytes]:
        local_only(request, evaluation.token)
        return json_response({"node_id": node.identity.node_id})

    @post(
        "/api/v1/eval/local",
        status_code=200,
        # The node's own cap (eval.max_model_mb) is enforced by _capped_body, after the token check.
        request_max_body_size=None,
        operation_class=documented(NodeAnswer, body=LocalEvalRequest, problems=(401, 403, 408, 413)),
    )
    async def answer(
        self, request: Request[Any, Any, Any], evaluation: NamedDependency[Evaluation]
    ) -> Response[bytes]:
        """Evaluate under the node's limits; answer with aggregates and a signed attestation, or a decline."""
        local_only(request, evaluation.token)
        envelope, artifact = await asyncio.to_thread(
            _decode_local, await _capped_body(request, evaluation.limits)
        )
        result = await asyncio.to_thread(evaluation.answer, envelope, artifact)
        return json_response(result)

    @get(
        "/api/v1/admin/eval/requests",
        sync_to_thread=False,
        operation_class=documented(list[EvalRequestView], problems=ADMIN),
    )
    def requests(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Access],
        evaluation: NamedDependency[Evaluation],
    ) -> Response[bytes]:
        access.member(request, admin=True)
        return json_response(evaluation.requests())

    @post(
        "/api/v1/admin/eval/requests/{digest:str}/{decision:str}",
        status_code=200,
        operation_class=documented(EvalRequestView, problems=(*ADMIN, 404, 409, 422)),
    )
    async def decide(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Access],
        evaluation: NamedDependency[Evaluation],
        digest: FromPath[str],
        decision: FromPath[str],
    ) -> Response[bytes]:
        admin = access.member(request, admin=True)
        if decision not in ("approve", "refuse"):
            raise InputError("decide with approve or refuse", field="decision")
        view = await asyncio.to_thread(
            evaluation.decide, digest, approve=decision == "approve", admin=admin.name
        )
        return json_response(view)
