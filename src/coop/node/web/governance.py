"""The governance page: the co-op's settings, proposals and votes, and the audit log anyone may check."""

from __future__ import annotations

import asyncio
from typing import Any, Final

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from coop.governance import Choice, GovernanceError, License, Scope, parse_ai_use, parse_enum
from coop.node.collective.audit import last_changes, recent_entries
from coop.node.collective.proposals import list_proposals, voted_proposals
from coop.node.collective.settings import Actor
from coop.node.errors import InputError, NodeError, NotFoundError
from coop.node.http.params import whole_number
from coop.node.members.sessions import WebSession
from coop.node.web.forms import LICENCES, SCOPES
from coop.node.web.site import WebSite, done

__all__ = ["GovernancePages", "governance_page", "proposal_changes"]

_PROPOSALS_PER_PAGE: Final = 20

Site = NamedDependency[WebSite]


def governance_page(
    site: WebSite,
    request: Request[Any, Any, Any],
    session: WebSession | None,
    *,
    status: int = 200,
    **extra: Any,
) -> Template:
    """Settings, one page of proposals (newest first, ``?before=ID`` for older ones) and the audit log."""
    node = site.node
    view = node.settings()
    before_text = request.query_params.get("before")
    before = None if not before_text else whole_number(before_text, field="before", low=1)
    page_rows = node.store.read(lambda c: list_proposals(c, limit=_PROPOSALS_PER_PAGE + 1, before=before))
    proposals = page_rows[:_PROPOSALS_PER_PAGE]
    older = proposals[-1].id if len(page_rows) > _PROPOSALS_PER_PAGE else None
    entries = node.store.read(lambda c: recent_entries(c, limit=30))
    chain = node.verify_audit()
    voted: set[int] = set()
    if session is not None:
        member_id = session.member.id
        voted = node.store.read(lambda c: voted_proposals(c, member_id))
    return site.page(
        request,
        session,
        "governance.html",
        status=status,
        view=view,
        settings=view.settings,
        changed=node.store.read(last_changes),
        proposals=proposals,
        older=older,
        voted=voted,
        entries=entries,
        chain=chain,
        licences=LICENCES,
        scopes=SCOPES,
        **extra,
    )


def proposal_changes(kind: str) -> dict[str, Any]:
    """A proposal form's choice, e.g. ``embargo:on`` or ``defaults.license:CC0-1.0``."""
    name, _, value = kind.partition(":")
    if name == "embargo" and value in ("on", "off"):
        return {"embargo": {"on": value == "on", "tags": [], "languages": []}}
    if name == "quality_freeze" and value in ("on", "off"):
        return {"quality_freeze": value == "on"}
    if name == "defaults.license":
        return {"defaults.license": parse_enum(License, value, field="change").value}
    if name == "defaults.scope":
        return {"defaults.scope": parse_enum(Scope, value, field="change").value}
    if name == "defaults.ai_use":
        parse_ai_use(value, field="change", strict=True)
        return {"defaults.ai_use": value}
    raise InputError("choose one of the changes offered", field="change")


class GovernancePages(Controller):
    """Anyone may read the governance page; a signed-in member may propose and vote."""

    path = "/"

    @get("/governance", sync_to_thread=False)
    def governance(
        self, request: Request[Any, Any, Any], site: Site, visitor: NamedDependency[WebSession | None]
    ) -> Template:
        return governance_page(site, request, visitor)

    @post("/governance/proposals", status_code=303)
    async def propose(
        self, request: Request[Any, Any, Any], site: Site, session: NamedDependency[WebSession]
    ) -> Response[Any]:
        values = await site.posted(request, session)
        try:
            changes = proposal_changes(str(values.get("change") or ""))
            reason = str(values.get("reason") or "").strip()
            if not reason:
                raise InputError("say why, for the members who will vote", field="reason")
            member = session.member
            await asyncio.to_thread(
                site.node.propose, changes, reason=reason, actor=Actor(member.name, admin=member.is_admin)
            )
        except (NodeError, GovernanceError) as exc:
            problem = site.with_error(exc)
            status = problem.pop("status")
            return governance_page(site, request, session, status=status, **problem)
        return done("/governance", "proposed", "#proposals")

    @post("/governance/proposals/{proposal:str}/vote", status_code=303)
    async def vote(
        self,
        request: Request[Any, Any, Any],
        site: Site,
        session: NamedDependency[WebSession],
        proposal: FromPath[str],
    ) -> Response[Any]:
        values = await site.posted(request, session)
        try:
            number = whole_number(proposal, field="proposal", low=1, error=NotFoundError)
            choice = parse_enum(Choice, str(values.get("choice") or ""), field="choice")
            await asyncio.to_thread(site.node.vote, number, session.member, choice)
        except (NodeError, GovernanceError) as exc:
            problem = site.with_error(exc)
            status = problem.pop("status")
            return governance_page(site, request, session, status=status, **problem)
        return done("/governance", "voted", f"#p{number}")
