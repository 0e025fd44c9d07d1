"""The joint actions page: what co-ops do together, who signed and when, and whether this co-op is bound.

Anyone may read it; an admin proposes, signs and ends actions from it (behind the session's
CSRF token), as the co-op's decision rules say: at once where an admin may act alone, else
through a proposal the members vote on.  It reads through the same answers as the API
(:mod:`coop.node.http.joint`), so both say the same.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from coop.governance import GovernanceError, JointKind
from coop.node.collective.settings import Actor
from coop.node.errors import InputError, NodeError
from coop.node.http.joint import (
    PAST_LICENCES,
    ProposeRequest,
    acting,
    action_id,
    actions_answer,
    known_coops,
    own_coop,
    propose_arguments,
)
from coop.node.members.sessions import WebSession
from coop.node.web.forms import AI_CHOICES, LICENCES
from coop.node.web.site import WebSite, done

__all__ = ["JointPages", "actions_page", "propose_request"]

PATH: Final = "/federation/actions"
Site = NamedDependency[WebSite]

# What each kind is called on the page (value, words, what it does).
KINDS: Final = (
    (
        JointKind.FREEZE.value,
        "Quality freeze",
        "Nothing of the bound co-ops flows beyond them; no release is cut.",
    ),
    (
        JointKind.EMBARGO.value,
        "Embargo",
        "Records matching the tags, languages or licences below (all of them if none) stay in.",
    ),
    (
        JointKind.EVAL_ONLY.value,
        "Evaluation only",
        "Records created from the start are used for evaluation only.",
    ),
    (JointKind.PREFERENCE.value, "Preference shift", "New records default to the AI-use preference below."),
    (JointKind.VOLUME_CAP.value, "Volume cap", "At most this many records a month go into releases."),
)
_ACTIVE: Final = ("active", "scheduled")
_PENDING: Final = ("pending",)
# ``done`` codes after which a members' vote was opened (``proposal`` says which): what it decides.
_VOTES: Final = {"joint-proposed-vote": "sign", "joint-sign-vote": "sign", "joint-end-vote": "end"}


def _vote_notice(request: Request[Any, Any, Any]) -> dict[str, Any] | None:
    """After a form that opened a vote: its number (a number only: no text is reflected from the URL)."""
    decision = _VOTES.get(request.query_params.get("done") or "")
    number = request.query_params.get("proposal") or ""
    if decision is None or not (number.isascii() and number.isdigit() and len(number) <= 12):
        return None
    return {"decision": decision, "proposal": int(number)}


def _split(text: object) -> list[str]:
    return [part.strip() for part in str(text or "").replace("\n", ",").split(",") if part.strip()]


def propose_request(values: dict[str, Any], multi: dict[str, list[str]]) -> ProposeRequest:
    """The propose form's fields as the API's request (one validation for both)."""
    threshold_text = str(values.get("threshold") or "").strip()
    if not threshold_text.isascii() or not threshold_text.isdigit() or len(threshold_text) > 3:
        raise InputError("how many co-ops must sign: a whole number", field="threshold")
    cap_text = str(values.get("monthly_records") or "").strip()
    kind = str(values.get("kind") or "")
    if kind == JointKind.VOLUME_CAP.value and not (
        cap_text.isascii() and cap_text.isdigit() and len(cap_text) < 10
    ):
        raise InputError("records a month: a whole number", field="monthly_records")
    fields = {
        "kind": kind,
        "reason": str(values.get("reason") or "").strip(),
        "threshold": int(threshold_text),
        "coops": [*multi.get("coops", []), *_split(values.get("other_coops"))],
        "tags": _split(values.get("tags")) if kind == JointKind.EMBARGO.value else [],
        "languages": _split(values.get("languages")) if kind == JointKind.EMBARGO.value else [],
        "licenses": multi.get("licenses", []) if kind == JointKind.EMBARGO.value else [],
        "ai_use": (str(values.get("ai_use") or "") or None) if kind == JointKind.PREFERENCE.value else None,
        "condition": (str(values.get("condition") or "").strip() or None)
        if kind == JointKind.PREFERENCE.value
        else None,
        "monthly_records": int(cap_text) if kind == JointKind.VOLUME_CAP.value else None,
        "starts_at": str(values.get("starts_at") or "") or None,
        "ends_at": str(values.get("ends_at") or "") or None,
        "review_at": str(values.get("review_at") or "") or None,
    }
    if not fields["reason"]:
        raise InputError("say why, for the co-ops that will decide", field="reason")
    try:
        return msgspec.convert(fields, ProposeRequest)
    except msgspec.ValidationError as exc:
        message = str(exc)
        field = "kind" if "$.kind" in message else "licenses" if "$.licenses" in message else "body"
        raise InputError("choose one of the choices offered", field=field) from None


def actions_page(
    site: WebSite,
    request: Request[Any, Any, Any],
    session: WebSession | None,
    *,
    status: int = 200,
    form: dict[str, Any] | None = None,
    chosen: list[str] | None = None,
    **extra: Any,
) -> Template:
    """Active, pending and past joint actions, and (for an admin) the forms to act on them."""
    node = site.node
    own = own_coop(node)
    answer = actions_answer(node.federation, own=own)
    vote = _vote_notice(request)
    if vote is not None:
        extra.setdefault("flash", None)  # the page says it, with the link to the vote
    return site.page(
        request,
        session,
        "actions.html",
        status=status,
        own=own[0],
        note=PAST_LICENCES,
        active=[a for a in answer.actions if a.status in _ACTIVE],
        pending=[a for a in answer.actions if a.status in _PENDING],
        past=[a for a in answer.actions if a.status not in _ACTIVE + _PENDING],
        known=known_coops(node.federation, own),
        chosen=set(chosen or ()),
        vote_notice=vote,
        kinds=KINDS,
        licences=LICENCES,
        ai_choices=AI_CHOICES,
        form=form or {},
        **extra,
    )


class JointPages(Controller):
    """Anyone may read the joint actions; an admin proposes, signs and ends them."""

    path = "/"

    @get(PATH, sync_to_thread=True)
    def actions(
        self, request: Request[Any, Any, Any], site: Site, visitor: NamedDependency[WebSession | None]
    ) -> Template:
        return actions_page(site, request, visitor)

    @post(PATH, status_code=303)
    async def propose(
        self, request: Request[Any, Any, Any], site: Site, admin: NamedDependency[WebSession]
    ) -> Response[Any]:
        values = await site.posted(request, admin)
        form = await request.form()
        multi = {key: [str(v) for v in form.getall(key)] for key in ("coops", "licenses") if key in form}
        node = site.node
        try:
            data = propose_request(values, multi)
            arguments = propose_arguments(data, own=own_coop(node)[0], now=node.now())
            keeper = node.federation.joint
            actor = Actor(admin.member.name, admin=True)
            view, proposal = await asyncio.to_thread(acting, lambda: keeper.propose(**arguments, actor=actor))
        except (NodeError, GovernanceError) as exc:
            return await self._refused(site, request, admin, exc, values, multi.get("coops"))
        anchor = f"#a-{view.id[:16]}"
        if proposal is not None:
            return done(f"{PATH}?proposal={proposal.id}", "joint-proposed-vote", anchor)
        return done(PATH, "joint-proposed", anchor)

    @post(f"{PATH}/{{action:str}}/{{decision:str}}", status_code=303)
    async def decide(
        self,
        request: Request[Any, Any, Any],
        site: Site,
        admin: NamedDependency[WebSession],
        action: FromPath[str],
        decision: FromPath[str],
    ) -> Response[Any]:
        """``sign`` or ``end`` an action, as this co-op."""
        values = await site.posted(request, admin)
        node = site.node
        try:
            if decision not in ("sign", "end"):
                raise InputError("sign or end", field="decision")
            key = action_id(action)
            keeper = node.federation.joint
            actor = Actor(admin.member.name, admin=True)
            act = keeper.sign if decision == "sign" else keeper.end
            view, proposal = await asyncio.to_thread(acting, lambda: act(key, actor=actor), action=key)
        except (NodeError, GovernanceError) as exc:
            return await self._refused(site, request, admin, exc, values)
        anchor = f"#a-{view.id[:16]}"
        if proposal is not None:
            return done(f"{PATH}?proposal={proposal.id}", f"joint-{decision}-vote", anchor)
        return done(PATH, "joint-signed" if decision == "sign" else "joint-ended", anchor)

    @staticmethod
    async def _refused(
        site: WebSite,
        request: Request[Any, Any, Any],
        session: WebSession,
        exc: NodeError | GovernanceError,
        values: dict[str, Any],
        chosen: list[str] | None = None,
    ) -> Template:
        problem = site.with_error(exc)
        status = problem.pop("status")
        form = {k: v for k, v in values.items() if k != "csrf" and isinstance(v, str)}
        return await asyncio.to_thread(
            actions_page, site, request, session, status=status, form=form, chosen=chosen, **problem
        )
