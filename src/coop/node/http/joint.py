"""HTTP routes of joint actions: co-ops acting together, k of the n they name co-signing.

Anyone may read every action this node holds (its status, who signed and when, whether this
co-op is bound); an admin proposes, signs and ends, each as this co-op's decision rules say
(an admin alone, or a proposal the members vote on).  The request and answer shapes here are
shared with the web page (:mod:`coop.node.web.joint`) and the command line
(:mod:`coop.node.cli.joint`), so the three say the same things in the same words.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from coop.federation.errors import JointError
from coop.federation.joint import ActionView
from coop.governance import GovernanceError, JointKind, JointSelector, License
from coop.node.collective.proposals import ProposalView
from coop.node.collective.settings import Actor
from coop.node.errors import InputError, NotFoundError
from coop.node.http.access import Access
from coop.node.http.controller import AreaController, json_response, require_json
from coop.node.http.openapi import ADMIN, documented
from coop.node.http.problems import decode_body
from coop.node.peering.joint_reads import open_joint_votes, origin_names
from coop.node.peering.service import FederationService
from coop.node.runtime import Node

__all__ = [
    "PAST_LICENCES",
    "ActionAnswer",
    "ActionsAnswer",
    "JointController",
    "ProposeRequest",
    "Signature",
    "Taken",
    "acting",
    "action_answer",
    "action_id",
    "actions_answer",
    "coop_names",
    "joint_errors",
    "known_coops",
    "moment",
    "one_answer",
    "open_votes",
    "own_coop",
    "propose_arguments",
    "taken",
]

PAST_LICENCES: Final = (
    "A joint action cannot undo past licences: records already released stay released. "
    "It holds back only what would flow from now on."
)
_ID: Final = re.compile(r"[0-9a-f]{8,64}")
TOO_LONG: Final = "the action is too long: shorten the reason or name fewer co-ops"
T = TypeVar("T")


class ProposeRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A joint action put to the co-ops it names; this co-op then signs it as its own rules say.

    Moments (``starts_at``, ``ends_at``, ``review_at``) are ISO 8601 dates or times (UTC
    unless they say otherwise) or Unix seconds; ``starts_at`` defaults to now. Give
    ``ends_at`` or ``review_at`` (or both). This co-op is added to ``coops`` if missing.
    """

    kind: JointKind
    reason: str
    threshold: int
    coops: list[str]
    tags: list[str] = []
    languages: list[str] = []
    licenses: list[License] = []
    ai_use: str | None = None
    condition: str | None = None
    monthly_records: int | None = None
    starts_at: str | int | None = None
    ends_at: str | int | None = None
    review_at: str | int | None = None


class Signature(msgspec.Struct, frozen=True):
    """A co-op's signature of an action (or of its end): who, when (its claim), and how it decided."""

    coop: str
    name: str | None
    at: int
    via: str


class ActionAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """One joint action as this node sees it, and what it means for this co-op."""

    id: str
    kind: str
    status: str
    reason: str
    proposer: str
    proposer_name: str | None
    coops: list[dict[str, Any]]
    threshold: int
    tags: list[str]
    languages: list[str]
    licenses: list[str]
    ai_use: str | None
    condition: str | None
    monthly_records: int | None
    starts_at: int
    ends_at: int | None
    review_at: int | None
    created_at: int
    signers: list[Signature]
    enders: list[Signature]
    effective_since: int | None
    ended_at: int | None
    bound_here: bool
    here: str
    note: str = PAST_LICENCES
    vote: int | None = None  # the open proposal of this co-op to sign or end it, if any
    vote_on: str | None = None  # what that vote decides: "sign" or "end"


class ActionsAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """Every joint action held here, newest first, with this co-op's id and the standing note."""

    coop: str
    note: str
    actions: list[ActionAnswer]


class Taken(msgspec.Struct, frozen=True):
    """What a propose, sign or end did: the action now, and the vote opened when the rules want one."""

    action: ActionAnswer
    proposal: ProposalView | None


# -- shared by the API, the page and the command line ------------------------------------


def moment(value: str | int | None, *, field: str) -> int | None:
    """An ISO 8601 date (``2026-07-01``: midnight UTC) or time, or Unix seconds, as Unix seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise InputError(f"{field} is a moment after 1970 (got {value})", field=field)
        return value
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        shown = text[:40] + ("..." if len(text) > 40 else "")
        raise InputError(
            f"{field} is an ISO date like 2026-07-01 or 2026-07-01T12:00Z (got {shown!r})", field=field
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def propose_arguments(request: ProposeRequest, *, own: str, now: int) -> dict[str, Any]:
    """The keyword arguments of :meth:`JointKeeper.propose` a request means (this co-op named)."""
    starts = moment(request.starts_at, field="starts_at")
    try:
        selector = JointSelector(
            tags=tuple(request.tags), languages=tuple(request.languages), licenses=tuple(request.licenses)
        )
    except GovernanceError as exc:
        raise _request_error(exc.message, exc.field) from None
    return {
        "kind": request.kind,
        "selector": selector,
        "ai_use": request.ai_use or None,
        "condition": request.condition or None,
        "monthly_records": request.monthly_records,
        "reason": request.reason,
        "starts_at": now if starts is None else starts,
        "ends_at": moment(request.ends_at, field="ends_at"),
        "review_at": moment(request.review_at, field="review_at"),
        "threshold": request.threshold,
        "coops": tuple(sorted({*request.coops, own})),
    }


_SELECTOR_FIELD: Final = re.compile(r"selector\.(tags|languages|licenses)(?:\[\d+\])?")


@contextmanager
def joint_errors(*, action: str | None = None) -> Iterator[None]:
    """A joint document's refusal as a node error naming the request's field; an unknown action 404."""
    try:
        yield
    except JointError as exc:
        raise _request_error(exc.message, getattr(exc, "field", None)) from None
    except InputError as exc:
        field = _field(exc.field)
        if field == exc.field:
            raise
        raise _request_error(exc.message, exc.field) from None
    except KeyError:
        shown = (action or "")[:70]
        raise NotFoundError(f"no joint action {shown!r} here", field="action") from None


def _field(field: str | None) -> str | None:
    """The request's name for a field of the signed document: the selector's parts are top level
    (``selector.languages[0]`` is ``languages``); an envelope over the size limit is the reason's."""
    if not isinstance(field, str):
        return None
    if field == "size":
        return "reason"
    found = _SELECTOR_FIELD.fullmatch(field)
    return found.group(1) if found else field


def _request_error(message: str, field: str | None) -> InputError:
    return InputError(TOO_LONG if field == "size" else message, field=_field(field))


def action_id(text: str) -> str:
    """An action id (or a unique prefix of at least 8 hex digits), else 404 naming ``action``."""
    if _ID.fullmatch(text) is None:
        raise NotFoundError(f"{text[:70]!r} is not a joint action id", field="action")
    return text


def own_coop(node: Node) -> tuple[str, str]:
    """This co-op's node id and name."""
    return node.identity.node_id, node.config.node.name


def coop_names(federation: FederationService, own: tuple[str, str]) -> dict[str, str]:
    """Co-op names by node id: the roster's members, pinned peers (named when pinned, else by the
    name their own manifests declare), and this co-op."""
    names: dict[str, str] = federation.joint.store.read(origin_names)
    for peer in federation.peers():
        if peer.name:
            names[peer.node_id] = peer.name
    roster = federation.roster.view().get("roster")
    if roster:
        for member in roster["members"]:
            if member.get("name"):
                names[member["id"]] = member["name"]
    names[own[0]] = own[1]
    return names


def known_coops(federation: FederationService, own: tuple[str, str]) -> list[tuple[str, str | None]]:
    """The co-ops a proposal may name from a list: the roster's members and pinned peers (not this
    one), with their names where known, by name then id."""
    names = coop_names(federation, own)
    ids = {peer.node_id for peer in federation.peers()}
    roster = federation.roster.view().get("roster")
    if roster:
        ids |= {member["id"] for member in roster["members"]}
    ids.discard(own[0])
    return sorted(((i, names.get(i)) for i in ids), key=lambda p: (p[1] is None, p[1] or "", p[0]))


def open_votes(federation: FederationService) -> dict[str, tuple[int, str]]:
    """Action id -> (number, "sign" or "end") of this co-op's open proposal deciding it (the oldest)."""
    return federation.joint.store.read(open_joint_votes)


def _here(view: ActionView, own: str, bound: bool, vote: tuple[int, str] | None = None) -> str:
    here = _standing(view, own, bound)
    if vote is None:
        return here
    number, decision = vote
    return f"{here}; members' vote open: proposal {number}" + (" (to end it)" if decision == "end" else "")


def _standing(view: ActionView, own: str, bound: bool) -> str:
    signed = {coop for coop, _, _ in view.signers}
    status = str(view.status)
    if bound:
        return "bound: this co-op signed and the action is in force here"
    if own not in view.action.coops:
        return "not bound: this co-op is not named in it"
    if own not in signed:
        return "not bound: this co-op did not sign"
    if status == "pending":
        return f"not bound yet: this co-op signed; it binds once {view.action.threshold} have"
    if status == "scheduled":
        return "not bound yet: this co-op signed; it starts at its start date"
    return f"not bound: the action is {status}"


def action_answer(
    view: ActionView,
    *,
    own: str,
    bound: bool,
    names: Mapping[str, str],
    vote: tuple[int, str] | None = None,
) -> ActionAnswer:
    """An :class:`ActionView` as the API, the page and ``--json`` show it (``vote``: this co-op's
    open proposal to sign or end it, and which)."""
    act = view.action
    signed = {coop for coop, _, _ in view.signers}
    return ActionAnswer(
        id=view.id,
        kind=str(act.kind),
        status=str(view.status),
        reason=act.reason,
        proposer=act.proposer,
        proposer_name=names.get(act.proposer),
        coops=[
            {"id": coop, "name": names.get(coop), "signed": coop in signed, "self": coop == own}
            for coop in act.coops
        ],
        threshold=act.threshold,
        tags=list(act.selector.tags),
        languages=list(act.selector.languages),
        licenses=[str(lic) for lic in act.selector.licenses],
        ai_use=act.ai_use,
        condition=act.condition,
        monthly_records=act.monthly_records,
        starts_at=act.starts_at,
        ends_at=act.ends_at,
        review_at=act.review_at,
        created_at=act.created_at,
        signers=[Signature(c, names.get(c), at, via) for c, at, via in view.signers],
        enders=[Signature(c, names.get(c), at, via) for c, at, via in view.enders],
        effective_since=view.effective_since,
        ended_at=view.ended_at,
        bound_here=bound,
        here=_here(view, own, bound, vote),
        vote=None if vote is None else vote[0],
        vote_on=None if vote is None else vote[1],
    )


def actions_answer(federation: FederationService, *, own: tuple[str, str]) -> ActionsAnswer:
    """Every action held here, newest first."""
    keeper = federation.joint
    names = coop_names(federation, own)
    votes = open_votes(federation)
    views = sorted(keeper.list(), key=lambda v: (-v.action.created_at, v.id))
    return ActionsAnswer(
        coop=own[0],
        note=PAST_LICENCES,
        actions=[
            action_answer(v, own=own[0], bound=keeper.bound_here(v), names=names, vote=votes.get(v.id))
            for v in views
        ],
    )


def one_answer(federation: FederationService, action: str, *, own: tuple[str, str]) -> ActionAnswer:
    keeper = federation.joint
    with joint_errors(action=action):
        view = keeper.view(action)
    names = coop_names(federation, own)
    vote = open_votes(federation).get(view.id)
    return action_answer(view, own=own[0], bound=keeper.bound_here(view), names=names, vote=vote)


def taken(
    federation: FederationService, done: tuple[ActionView, ProposalView | None], *, own: tuple[str, str]
) -> Taken:
    view, proposal = done
    names = coop_names(federation, own)
    vote = open_votes(federation).get(view.id)
    answer = action_answer(view, own=own[0], bound=federation.joint.bound_here(view), names=names, vote=vote)
    return Taken(action=answer, proposal=proposal)


def acting(call: Callable[[], T], *, action: str | None = None) -> T:
    """``call()`` with joint refusals translated (run it off the event loop)."""
    with joint_errors(action=action):
        return call()


_PROPOSE: Final = msgspec.json.Decoder(ProposeRequest)


class JointController(AreaController):
    """Joint actions: anyone reads them; admins propose, sign and end."""

    @get(
        "/api/v1/federation/actions",
        sync_to_thread=True,
        operation_class=documented(ActionsAnswer),
    )
    def actions(self, node: NamedDependency[Node]) -> Response[bytes]:
        """Every joint action this node holds (newest first): its status, who signed and when, and
        whether this co-op is bound. Records already released stay released (``note``)."""
        return json_response(actions_answer(node.federation, own=own_coop(node)))

    @get(
        "/api/v1/federation/actions/{action:str}",
        sync_to_thread=True,
        operation_class=documented(ActionAnswer, problems=(404,)),
    )
    def action(self, node: NamedDependency[Node], action: FromPath[str]) -> Response[bytes]:
        """One joint action (its id, or a unique prefix of at least 8 hex digits)."""
        return json_response(one_answer(node.federation, action_id(action), own=own_coop(node)))

    @post(
        "/api/v1/federation/actions",
        status_code=201,
        operation_class=documented(Taken, body=ProposeRequest, status=201, problems=(*ADMIN, 409)),
    )
    async def propose(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Access],
        node: NamedDependency[Node],
    ) -> Response[bytes]:
        """Propose a joint action (signed by this node); this co-op signs it at once where an admin
        may act alone, else a proposal opens for the members' vote (``proposal``)."""
        admin = access.member(request, admin=True)
        require_json(request)
        data = decode_body(_PROPOSE, await request.body())
        own = own_coop(node)
        arguments = propose_arguments(data, own=own[0], now=node.now())
        federation = node.federation
        keeper = federation.joint
        done = await asyncio.to_thread(
            acting, lambda: keeper.propose(**arguments, actor=Actor(admin.name, admin=True))
        )
        answer = await asyncio.to_thread(taken, federation, done, own=own)
        return json_response(
            answer, status=201, headers={"Location": f"/api/v1/federation/actions/{answer.action.id}"}
        )

    @post(
        "/api/v1/federation/actions/{action:str}/sign",
        status_code=200,
        operation_class=documented(Taken, problems=(*ADMIN, 404, 409, 422)),
    )
    async def sign(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Access],
        node: NamedDependency[Node],
        action: FromPath[str],
    ) -> Response[bytes]:
        """This co-op signs the action: now where an admin may act alone, else by the members' vote."""
        admin = access.member(request, admin=True)
        key = action_id(action)
        federation = node.federation
        keeper = federation.joint
        done = await asyncio.to_thread(
            acting, lambda: keeper.sign(key, actor=Actor(admin.name, admin=True)), action=key
        )
        answer = await asyncio.to_thread(taken, federation, done, own=own_coop(node))
        return json_response(answer)

    @post(
        "/api/v1/federation/actions/{action:str}/end",
        status_code=200,
        operation_class=documented(Taken, problems=(*ADMIN, 404, 409, 422)),
    )
    async def end(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Access],
        node: NamedDependency[Node],
        action: FromPath[str],
    ) -> Response[bytes]:
        """This co-op (a signer) signs the action's end; it ends once k of its signers have."""
        admin = access.member(request, admin=True)
        key = action_id(action)
        federation = node.federation
        keeper = federation.joint
        done = await asyncio.to_thread(
            acting, lambda: keeper.end(key, actor=Actor(admin.name, admin=True)), action=key
        )
        answer = await asyncio.to_thread(taken, federation, done, own=own_coop(node))
        return json_response(answer)
