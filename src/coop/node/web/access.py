"""The gated-access pages: /access for model builders (terms, request, grants, downloads) and /admin/access.

Anyone may read the terms at /access; a signed-in builder or member asks for access there,
sees their requests, and downloads a file of a granted bucket through a link that mints a
short-lived signed URL (a form post: the answer sends the browser to the URL, which works
only with the same session).  Admins decide at /admin/access and read the register.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect, Template

from coop.governance import GovernanceError, SettingClass
from coop.node.collective.settings import Actor
from coop.node.errors import InputError, NodeError
from coop.node.http.access_requests import access_limits, request_id, terms_of
from coop.node.members.sessions import WebSession
from coop.node.releases.model import ReleaseSummary
from coop.node.releases.repository import list_releases
from coop.node.web.site import WebSite, done

__all__ = ["AccessPages"]

_RELEASES_SHOWN: Final = 3  # the newest releases whose granted files a grant lists
_DONE: Final = {
    "requested": "Your request is sent. The co-op decides as its rules say; this page shows the answer.",
    "approved": "Approved: the grant is in force.",
    "vote": "The co-op's rules ask for a vote: the proposal is open on the governance page.",
    "refused": "The request is refused.",
    "revoked": "The grant is revoked: its download links stop working now.",
}

Site = NamedDependency[WebSite]


def _flash(request: Request[Any, Any, Any]) -> str | None:
    return _DONE.get(request.query_params.get("done") or "")


def _granted_files(releases: list[ReleaseSummary], licences: set[str]) -> list[tuple[str, str, int]]:
    """(release, path, bytes) of the data files of granted buckets in the newest releases."""
    out: list[tuple[str, str, int]] = []
    for summary in sorted(releases, key=lambda s: s.version, reverse=True)[:_RELEASES_SHOWN]:
        for bucket in summary.buckets:
            if bucket.license.value in licences:
                out.extend((summary.name, f.path, f.bytes) for f in bucket.files)
    return out


def access_page(
    site: WebSite,
    request: Request[Any, Any, Any],
    session: WebSession | None,
    *,
    status: int = 200,
    **extra: Any,
) -> Template:
    """The terms; signed in: the request form, my requests, my grants' files and my downloads."""
    node = site.node
    mine: list[Any] = []
    files: dict[int, list[tuple[str, str, int]]] = {}
    downloads: list[Any] = []
    if session is not None:
        mine = node.access.requests(member=session.member)
        granted = [r for r in mine if r.usable]
        if granted:
            releases = node.store.read(list_releases)
            files = {r.id: _granted_files(releases, set(r.buckets)) for r in granted}
        downloads = node.access.register(member=session.member)
    values: dict[str, Any] = {"flash": _flash(request)}
    values.update(extra)
    # Where the members vote on each grant, the builder's words go to the proposal they read.
    by_vote = not node.settings().settings.rules.rule(SettingClass.ACCESS).admin_alone
    return site.page(
        request,
        session,
        "access.html",
        by_vote=by_vote,
        status=status,
        private=True,
        access=terms_of(node),
        mine=mine,
        files=files,
        downloads=downloads,
        **values,
    )


def admin_access_page(
    site: WebSite, request: Request[Any, Any, Any], session: WebSession, *, status: int = 200, **extra: Any
) -> Template:
    node = site.node
    values: dict[str, Any] = {"flash": _flash(request)}
    values.update(extra)
    return site.page(
        request,
        session,
        "admin_access.html",
        status=status,
        access=terms_of(node),
        requests=node.access.requests(member=None),
        downloads=node.access.register(member=None),
        **values,
    )


def _text(values: dict[str, Any], name: str) -> str:
    return str(values.get(name) or "").strip()


class AccessPages(Controller):
    """/access for anyone (the terms) and signed-in builders; /admin/access for admins."""

    path = "/"

    @get("/access", sync_to_thread=False)
    def access(
        self, request: Request[Any, Any, Any], site: Site, visitor: NamedDependency[WebSession | None]
    ) -> Template:
        return access_page(site, request, visitor)

    @post("/access/requests", status_code=303)
    async def ask(
        self, request: Request[Any, Any, Any], site: Site, session: NamedDependency[WebSession]
    ) -> Response[Any]:
        values = await site.posted(request, session)
        try:
            if values.get("accept_terms") != "yes":
                raise InputError("read and accept the co-op's terms above", field="accept_terms")
            access_limits(request.app.state).request(session.member)
            await asyncio.to_thread(
                site.node.access.request,
                session.member,
                who=_text(values, "who"),
                purpose=_text(values, "purpose"),
                model=_text(values, "model"),
                open_weights=values.get("open_weights") == "yes",
                buckets=tuple(str(v) for k, v in (await request.form()).multi_items() if k == "buckets"),
                accept_terms=True,
            )
        except (NodeError, GovernanceError) as exc:
            problem = site.with_error(exc)
            status = problem.pop("status")
            return access_page(site, request, session, status=status, typed=values, **problem)
        return done("/access", "requested", "#mine")

    @post("/access/requests/{number:str}/download", status_code=303)
    async def download(
        self,
        request: Request[Any, Any, Any],
        site: Site,
        session: NamedDependency[WebSession],
        number: FromPath[str],
    ) -> Response[Any]:
        """Mint a signed URL for one granted file and send the browser to it."""
        values = await site.posted(request, session)
        try:
            found = request_id(number)
            access_limits(request.app.state).url(session.member)
            signed = await asyncio.to_thread(
                site.node.access.mint_url,
                found,
                session.member,
                release=_text(values, "release"),
                path=_text(values, "path"),
            )
        except (NodeError, GovernanceError) as exc:
            problem = site.with_error(exc)
            status = problem.pop("status")
            return access_page(site, request, session, status=status, **problem)
        return Redirect(signed.url_path, status_code=303)

    @get("/admin/access", sync_to_thread=False)
    def admin_access(
        self, request: Request[Any, Any, Any], site: Site, admin: NamedDependency[WebSession]
    ) -> Template:
        return admin_access_page(site, request, admin)

    @post("/admin/access/requests/{number:str}/{decision:str}", status_code=303)
    async def decide(
        self,
        request: Request[Any, Any, Any],
        site: Site,
        admin: NamedDependency[WebSession],
        number: FromPath[str],
        decision: FromPath[str],
    ) -> Response[Any]:
        await site.posted(request, admin)
        actor = Actor(admin.member.name, admin=True)
        desk = site.node.access
        try:
            found = request_id(number)
            if decision == "approve":
                _, proposal = await asyncio.to_thread(desk.approve, found, actor=actor)
                code = "approved" if proposal is None else "vote"
            elif decision == "refuse":
                await asyncio.to_thread(desk.refuse, found, actor=actor)
                code = "refused"
            elif decision == "revoke":
                await asyncio.to_thread(desk.revoke, found, actor=actor)
                code = "revoked"
            else:
                raise InputError("approve, refuse or revoke", field="decision")
        except (NodeError, GovernanceError) as exc:
            problem = site.with_error(exc)
            status = problem.pop("status")
            return admin_access_page(site, request, admin, status=status, **problem)
        return done("/admin/access", code, f"#r{found}")
