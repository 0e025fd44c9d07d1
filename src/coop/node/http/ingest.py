"""The hot intake route: a member's ``POST /api/v1/contributions`` answered in front of the framework.

Split from :mod:`coop.node.http.contributions` (the framework's routes for the same area), whose
checks, submission building and storing it shares; see :class:`IngestRoute`.
"""

from __future__ import annotations

from typing import Any, Final

from litestar import Litestar, Request
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from coop.governance import Channel
from coop.node.collective.settings import SettingsView
from coop.node.contributions import repository as contrib
from coop.node.contributions.repository import Idempotency
from coop.node.contributions.settled import SettingsChangedError
from coop.node.contributions.submission import ContributionRequest
from coop.node.http.access import Access, AddressLimit
from coop.node.http.contributions import (
    CONTRIBUTION_DECODER,
    INLINE_BODY_BYTES,
    JSON_ENCODER,
    Intake,
    build_from_request,
    idempotency,
    stored_body,
)
from coop.node.http.controller import require_json
from coop.node.http.problems import decode_body
from coop.node.members.accounts import Member
from coop.node.runtime import Node

__all__ = ["IngestRoute"]

_CONTRIBUTIONS_PATH: Final = "/api/v1/contributions"
# Rebuilt on fresh settings at most this many times when a write finds them changed.
_SETTLED_TRIES: Final = 3


class IngestRoute:
    """ASGI: a member's ``POST /api/v1/contributions`` answered in front of the framework.

    The hot intake route, without the per-request work of routing, dependency injection,
    the signature model and a response object (most of the server's time under load).
    The same checks in the same order as :meth:`ContributionsController.contribute`: the
    address's limit, the credential and its limit, the media type, the body decoded (every
    error naming its field), the submission built and validated, the Idempotency-Key, and a
    201 only once the group commit holding it is durable.  An error is answered by the app's
    own exception handlers (the same problem document); the app's ``before_send`` hooks (the
    security headers, ``Cache-Control``, the access log) see every response, as they wrap
    this handler.  Anything else (another path or method, a body without a declared length or
    over :data:`INLINE_BODY_BYTES`) goes to the app as it came.
    """

    def __init__(
        self,
        app: ASGIApp,
        litestar: Litestar,
        *,
        node: Node,
        access: Access,
        intake: Intake,
        address_limit: AddressLimit,
    ) -> None:
        self.app = app
        self.litestar = litestar
        self.node = node
        self.access = access
        self.intake = intake
        self.address_limit = address_limit
        self.largest = min(INLINE_BODY_BYTES, node.config.limits.max_body_bytes)
        # The settings the defaults come from, read again only when a write finds them changed
        # (checked in the write's own transaction): no database read on the event loop per request.
        self.settings: SettingsView | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._takes(scope):
            await self.app(scope, receive, send)
            return
        request: Request[Any, Any, Any] = self.litestar.request_class(scope=scope, receive=receive, send=send)
        try:
            await self.address_limit.before_request(request)
            member = self.access.member(request)
            require_json(request)
            body = await _read_body(receive)
            if body is None:
                return  # the client went away: nobody to answer, nothing stored
            data = decode_body(CONTRIBUTION_DECODER, body)
            idem = idempotency(request, f"m{member.id}", body)
            result, notices = await self._store(request, member, data, idem)
        except Exception as exc:  # noqa: BLE001 - answered as the app answers it
            await self._problem(request, exc, scope, receive, send)
            return
        payload = JSON_ENCODER.encode(stored_body(result, notices))
        location = f"/api/v1/contributions/{result.uid}".encode("ascii")
        await send(
            {
                "type": "http.response.start",
                "status": 201 if result.created else 200,
                "headers": [
                    (b"location", location),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode("ascii")),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload, "more_body": False})

    async def _store(
        self,
        request: Request[Any, Any, Any],
        member: Member,
        data: ContributionRequest,
        idem: Idempotency | None,
    ) -> tuple[contrib.InsertResult, tuple[str, ...]]:
        for _ in range(_SETTLED_TRIES):
            view = self.settings
            if view is None:
                view = self.settings = self.node.settings()
            defaults = self.node.intake_defaults(view.settings)  # a joint preference shift too
            submission, notices = build_from_request(
                self.node, data, channel=Channel.API, member=member, defaults=defaults
            )
            try:
                result = await self.intake.add(
                    request, member, submission, idem, settings_version=view.version
                )
            except SettingsChangedError:
                if self.settings is view:
                    self.settings = None
                continue
            return result, notices
        raise SettingsChangedError("the co-op's settings are changing; send it again in a moment")

    def _takes(self, scope: Scope) -> bool:
        if (
            scope["type"] != ScopeType.HTTP
            or scope["method"] != "POST"
            or scope["path"] != _CONTRIBUTIONS_PATH
        ):
            return False
        for name, value in scope["headers"]:
            if name == b"content-length":  # ASGI servers send header names in lower case
                return value.isdigit() and int(value) <= self.largest
        return False  # chunked: the framework enforces the body limit as it streams

    async def _problem(
        self, request: Request[Any, Any, Any], exc: Exception, scope: Scope, receive: Receive, send: Send
    ) -> None:
        handlers = self.litestar.exception_handlers
        handler = next(
            (handlers[kind] for kind in type(exc).__mro__ if kind in handlers), handlers[Exception]
        )
        response = handler(request, exc)
        await response.to_asgi_response(app=None, request=request)(scope, receive, send)


async def _read_body(receive: Receive) -> bytes | None:
    """The request's body (its length was declared and bounded), or None if the client left."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
