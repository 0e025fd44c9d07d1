"""HTTP routes of gated access: the co-op's terms, model builders' requests, grants, signed URLs, the register.

Who may do what is read at the top of each handler: anyone reads the terms; a signed-in
builder or member asks for access, sees their own requests and downloads, and mints a
signed URL for a file of a bucket their approved grant covers; an admin sees every
request and every download and decides (approve, refuse, revoke; approval opens a vote
when the co-op's ACCESS rule says so).  Creating requests and minting URLs spend from
per-member limits of their own (anti-scraping), on top of the per-credential limit.
The bytes themselves are served by :mod:`coop.node.http.gated`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from coop.node.access import DownloadView, RequestView, SignedUrl
from coop.node.collective.proposals import ProposalView
from coop.node.collective.settings import Actor
from coop.node.errors import InputError, NotFoundError, RateLimitedError
from coop.node.http.access import Access
from coop.node.http.controller import AreaController, json_response, require_json
from coop.node.http.openapi import ADMIN, AUTH, documented
from coop.node.http.params import IdPath, whole_number
from coop.node.http.problems import decode_body
from coop.node.http.ratelimit import RateLimiter
from coop.node.members.accounts import Member
from coop.node.runtime import Node

__all__ = [
    "AccessController",
    "AccessLimits",
    "AccessRequestBody",
    "AccessTerms",
    "Decided",
    "UrlBody",
    "access_limits",
    "request_id",
]

_LIMITS_KEY: Final = "coop.access-limits"


class AccessRequestBody(msgspec.Struct, forbid_unknown_fields=True):
    """Who you are, why, which model, and the gated buckets (licences) you ask for; you accept the terms."""

    who: str
    purpose: str
    model: str
    open_weights: bool
    buckets: list[str]
    accept_terms: bool


class UrlBody(msgspec.Struct, forbid_unknown_fields=True):
    """A file of a release (e.g. ``v3`` and ``cc-by-4.0/data.jsonl``) your grant covers."""

    release: str
    path: str


class AccessTerms(msgspec.Struct, frozen=True, kw_only=True):
    """What a model builder accepts, and how the co-op grants access."""

    gated: tuple[str, ...]
    terms: tuple[str, ...]
    conditions: tuple[str, ...]
    open_weights_only: bool
    grant_days: int
    url_seconds: int
    downloads_per_hour: int


class Decided(msgspec.Struct, frozen=True, kw_only=True):
    """A decision on a request; ``proposal`` is the vote it opened when an admin may not decide alone."""

    request: RequestView
    proposal: ProposalView | None = None


_REQUEST: Final = msgspec.json.Decoder(AccessRequestBody)
_URL: Final = msgspec.json.Decoder(UrlBody)


class AccessLimits:
    """Per-member limits on asking for access and on minting signed URLs (scraping is slow work)."""

    def __init__(
        self,
        *,
        requests: RateLimiter | None = None,
        urls: RateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.requests = requests or RateLimiter(per_minute=1, burst=5)
        self.urls = urls or RateLimiter(per_minute=30, burst=30)
        self.clock = clock

    def _spend(self, limiter: RateLimiter, member: Member, what: str) -> None:
        wait = limiter.allow(f"m{member.id}", self.clock())
        if wait:
            raise RateLimitedError(f"too many {what}; retry in {wait} s", retry_after=wait)

    def request(self, member: Member) -> None:
        self._spend(self.requests, member, "access requests")

    def url(self, member: Member) -> None:
        self._spend(self.urls, member, "download links")


def access_limits(state: State) -> AccessLimits:
    """The app's one :class:`AccessLimits` (the API and the pages spend from the same)."""
    found = state.get(_LIMITS_KEY)
    if not isinstance(found, AccessLimits):
        found = AccessLimits()
        state[_LIMITS_KEY] = found
    return found


def request_id(text: str) -> int:
    return whole_number(text, field="request", low=1, error=NotFoundError)


def terms_of(node: Node) -> AccessTerms:
    a = node.settings().settings.access
    return AccessTerms(
        gated=tuple(a.gated),
        terms=tuple(a.terms),
        conditions=tuple(a.conditions),
        open_weights_only=a.open_weights_only,
        grant_days=a.grant_days,
        url_seconds=a.url_seconds,
        downloads_per_hour=a.downloads_per_hour,
    )


def own_request(node: Node, number: int, member: Member) -> RequestView:
    """The request, if it is ``member``'s (or they are an admin): 404 otherwise (not theirs to see)."""
    view = node.access.get(number)
    if view.member_id != member.id and not member.is_admin:
        raise NotFoundError(f"no access request {number}", field="request")
    return view


class AccessController(AreaController):
    """Gated access: terms, requests and decisions, signed download URLs, the download register."""

    dependencies = {"limits": Provide(access_limits, sync_to_thread=False)}  # noqa: RUF012 (litestar's API)

    @get("/api/v1/access/terms", sync_to_thread=False, operation_class=documented(AccessTerms))
    def terms(self, node: NamedDependency[Node]) -> Response[bytes]:
        """The co-op's terms and conditions for gated buckets, and which buckets are gated (public)."""
        return json_response(terms_of(node))

    @post(
        "/api/v1/access/requests",
        status_code=201,
        operation_class=documented(RequestView, body=AccessRequestBody, status=201, problems=(*ADMIN, 409)),
    )
    async def ask(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        access: NamedDependency[Access],
        limits: NamedDependency[AccessLimits],
    ) -> Response[bytes]:
        """Ask for access to gated buckets (a builder's or member's account); ``accept_terms`` must be true."""
        member = access.member(request)
        require_json(request)
        data = decode_body(_REQUEST, await request.body())
        if data.accept_terms is not True:
            raise InputError(
                "read and accept the co-op's terms (GET /api/v1/access/terms)", field="accept_terms"
            )
        limits.request(member)
        view = await asyncio.to_thread(
            node.access.request,
            member,
            who=data.who,
            purpose=data.purpose,
            model=data.model,
            open_weights=data.open_weights,
            buckets=tuple(data.buckets),
            accept_terms=data.accept_terms,
        )
        return json_response(view, status=201)

    @get(
        "/api/v1/access/requests",
        sync_to_thread=False,
        operation_class=documented(list[RequestView], problems=AUTH),
    )
    def requests(
        self, request: Request[Any, Any, Any], node: NamedDependency[Node], access: NamedDependency[Access]
    ) -> Response[bytes]:
        """Your own requests and grants; an admin sees everyone's."""
        member = access.member(request)
        return json_response(node.access.requests(member=None if member.is_admin else member))

    @get(
        "/api/v1/access/requests/{number:str}",
        sync_to_thread=False,
        operation_class=documented(RequestView, problems=(*AUTH, 404)),
    )
    def one(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        access: NamedDependency[Access],
        number: IdPath,
    ) -> Response[bytes]:
        member = access.member(request)
        return json_response(own_request(node, request_id(number), member))

    @post(
        "/api/v1/access/requests/{number:str}/approve",
        status_code=200,
        operation_class=documented(Decided, problems=(*ADMIN, 404, 409)),
    )
    async def approve(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        access: NamedDependency[Access],
        number: IdPath,
    ) -> Response[bytes]:
        """Grant it now where an admin may decide alone; otherwise open the vote (``proposal``)."""
        admin = access.member(request, admin=True)
        found = request_id(number)
        view, proposal = await asyncio.to_thread(
            node.access.approve, found, actor=Actor(admin.name, admin=True)
        )
        return json_response(Decided(request=view, proposal=proposal))

    @post(
        "/api/v1/access/requests/{number:str}/refuse",
        status_code=200,
        operation_class=documented(Decided, problems=(*ADMIN, 404, 409)),
    )
    async def refuse(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        access: NamedDependency[Access],
        number: IdPath,
    ) -> Response[bytes]:
        admin = access.member(request, admin=True)
        found = request_id(number)
        view = await asyncio.to_thread(node.access.refuse, found, actor=Actor(admin.name, admin=True))
        return json_response(Decided(request=view))

    @post(
        "/api/v1/access/requests/{number:str}/revoke",
        status_code=200,
        operation_class=documented(Decided, problems=(*ADMIN, 404, 409)),
    )
    async def revoke(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        access: NamedDependency[Access],
        number: IdPath,
    ) -> Response[bytes]:
        """End a grant now: signed URLs already handed out stop working too."""
        admin = access.member(request, admin=True)
        found = request_id(number)
        view = await asyncio.to_thread(node.access.revoke, found, actor=Actor(admin.name, admin=True))
        return json_response(Decided(request=view))

    @post(
        "/api/v1/access/requests/{number:str}/urls",
        status_code=201,
        operation_class=documented(SignedUrl, body=UrlBody, status=201, problems=(*ADMIN, 404, 409)),
    )
    async def url(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        access: NamedDependency[Access],
        limits: NamedDependency[AccessLimits],
        number: IdPath,
    ) -> Response[bytes]:
        """A short-lived signed URL for one file, usable only with your own credential: ``url`` is
        absolute (the node's ``public_url``), ``url_path`` the same without scheme and host."""
        member = access.member(request)
        found = request_id(number)
        require_json(request)
        data = decode_body(_URL, await request.body())
        limits.url(member)
        signed = await asyncio.to_thread(
            node.access.mint_url, found, member, release=data.release, path=data.path
        )
        # Absolute, from the node's public address (as the card's and the site's access links are).
        absolute = node.config.node.public_url.rstrip("/") + signed.url_path
        return json_response(msgspec.structs.replace(signed, url=absolute), status=201)

    @get(
        "/api/v1/access/register",
        sync_to_thread=False,
        operation_class=documented(list[DownloadView], problems=AUTH),
    )
    def register(
        self, request: Request[Any, Any, Any], node: NamedDependency[Node], access: NamedDependency[Access]
    ) -> Response[bytes]:
        """Every download of a gated file: who, what, when (an admin sees all; a grantee their own)."""
        member = access.member(request)
        return json_response(node.access.register(member=None if member.is_admin else member))
