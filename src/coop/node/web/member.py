"""My data: what a member shared and what became of it, and their rights over it (export, correct, withdraw).

Only the member's own contributions are found here: anyone else's is reported
exactly like a missing one (404), with no hint that it exists.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any, Final

from litestar import Controller, Request, Response, get, post, route
from litestar.di import NamedDependency
from litestar.enums import HttpMethod
from litestar.params import FromPath
from litestar.response import Template

from coop.governance import Audience, GovernanceError
from coop.node.contributions import repository as contrib
from coop.node.contributions import rights
from coop.node.contributions.submission import ContributionState, EditRequest
from coop.node.errors import InputError, NodeError, NotFoundError
from coop.node.http.download import Download
from coop.node.ids import uuid7
from coop.node.members import repository as members
from coop.node.members.sessions import WebSession
from coop.node.web.site import WebSite, done, first_words

__all__ = ["EDITABLE", "STATE_WORDS", "MemberPages"]

STATE_WORDS: Final = {
    ContributionState.WAITING.value: "Waiting to be checked",
    ContributionState.PROCESSING.value: "Being checked",
    ContributionState.ACCEPTED.value: "Accepted: in the next release",  # public scope (me.html words the others)
    ContributionState.RELEASED.value: "Released",
    ContributionState.QUARANTINED.value: "Held for an admin's review",
    ContributionState.REJECTED.value: "Not published (an admin decided)",
    ContributionState.DUPLICATE.value: "Already shared before",
    ContributionState.WITHDRAWN.value: "Withdrawn",
}

# The states a member may still correct (see contributions.repository.edit_contribution).
EDITABLE: Final = frozenset(
    {
        ContributionState.WAITING,
        ContributionState.PROCESSING,
        ContributionState.QUARANTINED,
        ContributionState.ACCEPTED,
        ContributionState.RELEASED,
    }
)

Site = NamedDependency[WebSite]
Session = NamedDependency[WebSession]


def owned(site: WebSite, session: WebSession, uid: str) -> contrib.ContributionDetail:
    """The signed-in member's contribution ``uid``; someone else's is 404, like a missing one."""
    detail = site.node.store.read(lambda c: contrib.get_contribution(c, uid))
    if detail is None or detail.member_id != session.member.id:
        raise NotFoundError(f"no contribution {uid} of yours", field="uid")
    return detail


def _messages(detail: contrib.ContributionDetail) -> Any:
    if detail.record is not None:
        return detail.record.content
    if detail.submission is not None:
        return detail.submission.chat.messages
    return ()


def _correction(detail: contrib.ContributionDetail) -> str:
    if detail.record is not None:
        return detail.record.correction or ""
    if detail.submission is not None:
        return detail.submission.correction or ""
    return ""


def correct_page(
    site: WebSite,
    request: Request[Any, Any, Any],
    session: WebSession,
    detail: contrib.ContributionDetail,
    *,
    correction: str | None = None,
    status: int = 200,
    **extra: Any,
) -> Template:
    """The chat as the member may see it (the policy decides), and the form to correct its answer."""
    shown = contrib.shown_to(detail.view, Audience.MEMBER).carries_content
    return site.page(
        request,
        session,
        "correct.html",
        status=status,
        item=detail.view,
        messages=_messages(detail) if shown else (),
        correction=_correction(detail) if correction is None else correction,
        **extra,
    )


class MemberPages(Controller):
    """The signed-in member's own data."""

    path = "/"

    @get("/me", sync_to_thread=False)
    def my_data(self, request: Request[Any, Any, Any], site: Site, session: Session) -> Template:
        member_id = session.member.id
        items = site.node.store.read(lambda c: contrib.list_member_contributions(c, member_id))
        announce = site.node.store.read(lambda c: members.announces(c, member_id))
        return site.page(
            request,
            session,
            "me.html",
            items=list(reversed(items)),
            states=STATE_WORDS,
            editable={state.value for state in EDITABLE},
            announce=announce,
        )

    @post("/me/announce", status_code=303)
    async def announce(self, request: Request[Any, Any, Any], site: Site, session: Session) -> Response[Any]:
        """The member's choice: may the co-op's microblog and feed announce their released chats."""
        values = await site.posted(request, session)
        chosen = values.get("announce") == "1"  # a checkbox: present when ticked
        member_id = session.member.id
        await site.node.store.awrite(lambda c: members.set_announce(c, member_id, chosen))
        return done("/me", "announce-on" if chosen else "announce-off", "#announce")

    @route("/me/export.jsonl", http_method=[HttpMethod.GET, HttpMethod.HEAD], sync_to_thread=False)
    def my_export(self, site: Site, session: Session) -> Download:
        member_id = session.member.id
        lines = site.node.store.read(lambda c: list(rights.iter_member_records(c, member_id)))
        return Download(
            b"".join(lines),
            media_type="application/jsonl",
            filename="my-contributions.jsonl",
            disposition="attachment",
            headers={"Cache-Control": "no-store"},
        )

    @get("/me/withdraw/{uid:str}", sync_to_thread=False)
    def withdraw_page(
        self, request: Request[Any, Any, Any], site: Site, session: Session, uid: FromPath[str]
    ) -> Template:
        detail = owned(site, session, uid)
        if detail.view.state is ContributionState.WITHDRAWN:
            raise NotFoundError(f"{uid} is already withdrawn", field="uid")
        summary = first_words(_messages(detail))
        return site.page(request, session, "withdraw.html", item=detail.view, summary=summary)

    @post("/me/withdraw/{uid:str}", status_code=303)
    async def withdraw(
        self, request: Request[Any, Any, Any], site: Site, session: Session, uid: FromPath[str]
    ) -> Response[Any]:
        await site.posted(request, session)
        owned(site, session, uid)
        member = session.member
        now = site.node.now()
        await site.node.store.awrite(
            lambda c: rights.withdraw_contribution(c, uid=uid, member=member, now=now)
        )
        return done("/me", "withdrawn", f"#c-{uid}")

    @get("/me/correct/{uid:str}", sync_to_thread=False)
    def correct_form(
        self, request: Request[Any, Any, Any], site: Site, session: Session, uid: FromPath[str]
    ) -> Template:
        """The member's chat and the right answer they may give (or change) for it."""
        detail = owned(site, session, uid)
        if detail.view.state is ContributionState.WITHDRAWN:
            raise NotFoundError(f"{uid} is withdrawn", field="uid")
        return correct_page(site, request, session, detail)

    @post("/me/correct/{uid:str}", status_code=303)
    async def correct(
        self, request: Request[Any, Any, Any], site: Site, session: Session, uid: FromPath[str]
    ) -> Response[Any]:
        """Rectify the chat's correction, as ``PATCH /api/v1/contributions/{uid}`` does."""
        values = await site.posted(request, session)
        detail = owned(site, session, uid)
        raw = values.get("correction")
        text = raw if isinstance(raw, str) else ""  # a file part is not a correction
        try:
            if raw is not None and not isinstance(raw, str):
                raise InputError("the correction is text typed in the form, not a file", field="correction")
            if text.strip() == _correction(detail).strip():
                raise InputError(
                    "this is the answer already saved: change it, or go back", field="correction"
                )
            new_uid, _state, _notices = await asyncio.to_thread(
                partial(site.node.edit, session.member, uid, EditRequest(correction=text), uuid7())
            )
        except (NodeError, GovernanceError) as exc:
            problem = site.with_error(exc)
            status = problem.pop("status")
            return correct_page(site, request, session, detail, correction=text, status=status, **problem)
        site.poke()
        return done("/me", "corrected", f"#c-{new_uid}")
