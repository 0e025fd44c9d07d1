"""The admin pages: the dashboard, review of held chats, release cuts, the switches and bounties.

Every handler here names the ``admin`` dependency: a visitor who is not signed
in is sent to sign in, a member who is not an admin is refused (403).  A refused
action shows the dashboard again with the problem next to its field.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable
from typing import Any, Final

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from coop.governance import GovernanceError, parse_enum
from coop.node.collective.audit import last_changes, recent_entries
from coop.node.collective.proposals import list_proposals
from coop.node.collective.settings import Actor
from coop.node.contributions import repository as contrib
from coop.node.contributions.repository import Decision
from coop.node.contributions.submission import ContributionState
from coop.node.errors import InputError, NodeError, NotFoundError
from coop.node.http.params import whole_number
from coop.node.members.sessions import WebSession
from coop.node.releases import bounties
from coop.node.releases.highlights import highlights_listed
from coop.node.releases.repository import list_releases
from coop.node.web.forms import preview_chat
from coop.node.web.site import WebSite, done

__all__ = ["AdminPages", "admin_page"]

_LANGUAGE: Final = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")

Site = NamedDependency[WebSite]
Admin = NamedDependency[WebSession]
Action = Callable[[WebSite, WebSession, dict[str, Any]], Any]


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def admin_page(
    site: WebSite, request: Request[Any, Any, Any], session: WebSession, *, status: int = 200, **extra: Any
) -> Template:
    """The dashboard: counts, the queues, switches, bounties, open proposals, the last releases,
    the highlighted records."""
    node = site.node
    view = node.settings()
    return site.page(
        request,
        session,
        "admin.html",
        status=status,
        settings=view.settings,
        view=view,
        changed=node.store.read(last_changes),
        counts=node.store.read(contrib.count_by_state),
        waiting=node.store.read(lambda c: contrib.list_by_state(c, ContributionState.WAITING, limit=100)),
        quarantined=node.store.read(
            lambda c: contrib.list_by_state(c, ContributionState.QUARANTINED, limit=100)
        ),
        bounties=node.store.read(lambda c: bounties.bounties(c)),
        entries=node.store.read(lambda c: recent_entries(c, limit=15)),
        open_proposals=[p for p in node.store.read(list_proposals) if p.status.value == "open"],
        releases=node.store.read(list_releases)[-3:],
        highlights=node.store.read(highlights_listed),
        **extra,
    )


async def _act(
    site: WebSite,
    request: Request[Any, Any, Any],
    session: WebSession,
    act: Action,
    code: str,
    anchor: str = "",
) -> Response[Any]:
    """Run an admin action off the event loop; back to the dashboard, saying what was done or what was wrong."""
    values = await site.posted(request, session)
    try:
        await asyncio.to_thread(act, site, session, values)
    except (NodeError, GovernanceError) as exc:
        problem = site.with_error(exc)
        status = problem.pop("status")
        return admin_page(site, request, session, status=status, **problem)
    return done("/admin", code, anchor)


def _switch(site: WebSite, session: WebSession, values: dict[str, Any], changes: dict[str, Any]) -> None:
    """Change a setting directly, or (``how=propose``) put it to the members' vote."""
    actor = Actor(session.member.name, admin=True)
    if values.get("how") == "propose":
        reason = str(values.get("reason") or "").strip()
        if not reason:
            raise InputError("say why, for the members who will vote", field="reason")
        site.node.propose(changes, reason=reason, actor=actor)
    else:
        site.node.change_settings(changes, actor=actor)


def _process(site: WebSite, session: WebSession, values: dict[str, Any]) -> None:
    report = site.node.process_pending()
    if report.paused:
        raise InputError(
            "the quality freeze is on: nothing is processed until it is lifted", field="quality_freeze"
        )


def _release(site: WebSite, session: WebSession, values: dict[str, Any]) -> None:
    site.node.cut_release(actor=session.member.name)
    site.node.index_catalog()


def _embargo(site: WebSite, session: WebSession, values: dict[str, Any]) -> None:
    on = values.get("state") == "on"
    embargo = {
        "on": on,
        "tags": _split(str(values.get("tags") or "")) if on else [],
        "languages": _split(str(values.get("languages") or "")) if on else [],
    }
    _switch(site, session, values, {"embargo": embargo})


def _freeze(site: WebSite, session: WebSession, values: dict[str, Any]) -> None:
    _switch(site, session, values, {"quality_freeze": values.get("state") == "on"})


def _add_bounty(site: WebSite, session: WebSession, values: dict[str, Any]) -> None:
    title = str(values.get("title") or "").strip()
    if not 1 <= len(title) <= 120:
        raise InputError("give the bounty a title of 1 to 120 characters", field="title")
    target = whole_number(str(values.get("target") or "").strip(), field="target", low=1, high=1_000_000)
    label = str(values.get("label") or "") or None
    if label not in (None, "good", "fail"):
        raise InputError("the label is good, fail or either", field="label")
    language = str(values.get("language") or "").strip() or None
    if language is not None and not _LANGUAGE.match(language):
        raise InputError(f"{language[:40]!r} is not a language tag like 'id' or 'pt-BR'", field="language")
    tag = str(values.get("tag") or "").strip() or None
    description = str(values.get("description") or "").strip()[:2000]
    now = site.node.now()
    name = session.member.name

    def write(conn: sqlite3.Connection) -> None:
        bounties.add_bounty(
            conn,
            title=title,
            description=description,
            label=label,
            language=language,
            tag=tag,
            target=target,
            admin=name,
            now=now,
        )

    site.node.store.write(write)


class AdminPages(Controller):
    """For the co-op's admins only."""

    path = "/"

    @get("/admin", sync_to_thread=False)
    def admin_dashboard(self, request: Request[Any, Any, Any], site: Site, admin: Admin) -> Template:
        return admin_page(site, request, admin)

    @post("/admin/process", status_code=303)
    async def admin_process(self, request: Request[Any, Any, Any], site: Site, admin: Admin) -> Response[Any]:
        return await _act(site, request, admin, _process, "processed", "#waiting")

    @post("/admin/release", status_code=303)
    async def admin_release(self, request: Request[Any, Any, Any], site: Site, admin: Admin) -> Response[Any]:
        return await _act(site, request, admin, _release, "released", "#releases")

    @post("/admin/embargo", status_code=303)
    async def admin_embargo(self, request: Request[Any, Any, Any], site: Site, admin: Admin) -> Response[Any]:
        return await _act(site, request, admin, _embargo, "embargo", "#switches")

    @post("/admin/freeze", status_code=303)
    async def admin_freeze(self, request: Request[Any, Any, Any], site: Site, admin: Admin) -> Response[Any]:
        return await _act(site, request, admin, _freeze, "freeze", "#switches")

    @get("/admin/review/{uid:str}", sync_to_thread=True)  # redacts every message: off the loop
    def review(
        self, request: Request[Any, Any, Any], site: Site, admin: Admin, uid: FromPath[str]
    ) -> Template:
        detail = site.node.store.read(lambda c: contrib.get_contribution(c, uid))
        if detail is None or detail.submission is None:
            raise NotFoundError(f"no contribution {uid} waiting or held for review", field="uid")
        sub = detail.submission
        preview = preview_chat(sub.chat, note=sub.note or "", correction=sub.correction or "")
        return site.page(
            request,
            admin,
            "review.html",
            item=detail.view,
            submission=sub,
            preview=preview,
            threshold=site.config.pipeline.quarantine_pii_threshold,
        )

    @post("/admin/review/{uid:str}", status_code=303)
    async def decide(
        self, request: Request[Any, Any, Any], site: Site, admin: Admin, uid: FromPath[str]
    ) -> Response[Any]:
        def act(site: WebSite, session: WebSession, values: dict[str, Any]) -> None:
            choice = parse_enum(Decision, str(values.get("decision") or ""), field="decision")
            site.node.decide_quarantine(uid, choice, admin=session.member.name)

        return await _act(site, request, admin, act, "decided", "#quarantine")

    @post("/admin/bounties", status_code=303)
    async def add_bounty(self, request: Request[Any, Any, Any], site: Site, admin: Admin) -> Response[Any]:
        return await _act(site, request, admin, _add_bounty, "bounty", "#bounties")

    @post("/admin/bounties/{bounty_id:str}/close", status_code=303)
    async def close_bounty(
        self, request: Request[Any, Any, Any], site: Site, admin: Admin, bounty_id: FromPath[str]
    ) -> Response[Any]:
        def act(site: WebSite, session: WebSession, values: dict[str, Any]) -> None:
            number = whole_number(bounty_id, field="bounty", low=1, error=NotFoundError)
            now = site.node.now()
            site.node.store.write(lambda c: bounties.close_bounty(c, number, now=now))

        return await _act(site, request, admin, act, "bounty-closed", "#bounties")
