"""HTTP routes of collective governance: settings, proposals and votes, the audit log, payouts."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Final

import msgspec
from litestar import Request, Response, get, post, put
from litestar.di import NamedDependency

from coop.governance import Choice, parse_enum
from coop.governance.audit import AuditEntry
from coop.node.collective.audit import audit_entries, audit_head
from coop.node.collective.payouts import PayoutView, list_payouts
from coop.node.collective.proposals import ProposalView, get_proposal, list_proposals
from coop.node.collective.settings import Actor, SettingsView
from coop.node.errors import InputError, NotFoundError
from coop.node.http import answers as a
from coop.node.http.access import Access
from coop.node.http.controller import AreaController, json_response, require_json
from coop.node.http.openapi import ADMIN, AUTH, documented
from coop.node.http.params import IdPath, release_version, whole_number, whole_query
from coop.node.http.problems import decode_body
from coop.node.runtime import Node

__all__ = ["GovernanceController"]


class SettingsChange(msgspec.Struct, forbid_unknown_fields=True):
    """Dotted setting paths (or whole sections) and their new values."""

    changes: dict[str, Any]


class ProposalRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A change put to the vote, with the reason members will read."""

    changes: dict[str, Any]
    reason: str
    voting_days: int | None = None


class VoteRequest(msgspec.Struct, forbid_unknown_fields=True):
    """yes, no or abstain."""

    choice: str


class PayoutRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The release paid for, the amount as decimal text (never a float) and the ISO 4217 currency.

    A release is paid once: to replace its payout, ``supersede`` says why (it is audited).
    """

    release: str
    amount: str
    currency: str
    supersede: str | None = None


_CHANGE: Final = msgspec.json.Decoder(SettingsChange)
_PROPOSAL: Final = msgspec.json.Decoder(ProposalRequest)
_VOTE: Final = msgspec.json.Decoder(VoteRequest)
_PAYOUT: Final = msgspec.json.Decoder(PayoutRequest)


def _release_number(text: str) -> int:
    return release_version(text, field="release", error=InputError)


def _proposal_id(text: str) -> int:
    return whole_number(text, field="proposal", low=1, error=NotFoundError)


def governance_state_of(node: Node) -> dict[str, object]:
    """What a manifest carries: settings digest, embargo, quality freeze, audit head."""
    view = node.settings()
    head = node.store.read(audit_head)
    return {
        "settings_version": view.version,
        "settings_digest": view.digest,
        "embargo": view.settings.embargo,
        "quality_freeze": view.settings.quality_freeze,
        "audit_head": None if head is None else {"seq": head.seq, "hash": head.hash},
    }


class GovernanceController(AreaController):
    """Settings, proposals and votes, the audit log and payouts."""

    @get("/api/v1/governance/settings", sync_to_thread=False, operation_class=documented(SettingsView))
    def settings(self, node: NamedDependency[Node]) -> Response[bytes]:
        """The co-op's current settings, with who changed them last and how."""
        return json_response(node.settings())

    @get("/api/v1/governance/state", sync_to_thread=False, operation_class=documented(a.GovernanceState))
    def governance_state(self, node: NamedDependency[Node]) -> Response[bytes]:
        """What a manifest carries: settings digest, embargo, quality freeze, audit head."""
        return json_response(governance_state_of(node))

    @put(
        "/api/v1/governance/settings",
        operation_class=documented(SettingsView, body=SettingsChange, problems=(*ADMIN, 409)),
    )
    async def change(
        self, request: Request[Any, Any, Any], node: NamedDependency[Node], access: NamedDependency[Access]
    ) -> Response[bytes]:
        """An admin's direct change, where the decision rules let an admin act alone."""
        admin = access.member(request, admin=True)
        require_json(request)
        data = decode_body(_CHANGE, await request.body())
        view = await asyncio.to_thread(
            node.change_settings, data.changes, actor=Actor(admin.name, admin=True)
        )
        return json_response(view)

    @post(
        "/api/v1/governance/proposals",
        status_code=201,
        operation_class=documented(ProposalView, body=ProposalRequest, status=201, problems=(*AUTH, 409)),
    )
    async def propose(
        self, request: Request[Any, Any, Any], node: NamedDependency[Node], access: NamedDependency[Access]
    ) -> Response[bytes]:
        member = access.member(request)
        require_json(request)
        data = decode_body(_PROPOSAL, await request.body())
        view = await asyncio.to_thread(
            node.propose,
            data.changes,
            reason=data.reason,
            actor=Actor(member.name, admin=member.is_admin),
            voting_days=data.voting_days,
        )
        return json_response(view, status=201)

    @get(
        "/api/v1/governance/proposals",
        sync_to_thread=False,
        operation_class=documented(list[ProposalView], problems=AUTH),
    )
    def proposals(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        access: NamedDependency[Access],
        limit: Annotated[str, whole_query("proposals per page", low=1, high=500, default=100)] = "100",
        before: Annotated[str, whole_query("only proposals with a lower id (the next page)")] = "0",
    ) -> Response[bytes]:
        """Proposals newest first, a page at a time."""
        access.member(request)
        count = whole_number(limit, field="limit", low=1, high=500)
        below = whole_number(before, field="before") or None
        return json_response(node.store.read(lambda c: list_proposals(c, limit=count, before=below)))

    @get(
        "/api/v1/governance/proposals/{proposal:str}",
        sync_to_thread=False,
        operation_class=documented(ProposalView, problems=(*AUTH, 404)),
    )
    def proposal(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        access: NamedDependency[Access],
        proposal: IdPath,
    ) -> Response[bytes]:
        access.member(request)
        number = _proposal_id(proposal)
        return json_response(node.store.read(lambda c: get_proposal(c, number)))

    @post(
        "/api/v1/governance/proposals/{proposal:str}/votes",
        status_code=201,
        operation_class=documented(ProposalView, body=VoteRequest, status=201, problems=(*AUTH, 404, 409)),
    )
    async def vote(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        access: NamedDependency[Access],
        proposal: IdPath,
    ) -> Response[bytes]:
        """Cast yes, no or abstain; the change takes effect once quorum and threshold are met."""
        member = access.member(request)
        number = _proposal_id(proposal)
        require_json(request)
        data = decode_body(_VOTE, await request.body())
        choice = parse_enum(Choice, data.choice, field="choice")
        view = await asyncio.to_thread(node.vote, number, member, choice)
        return json_response(view, status=201)

    @get(
        "/api/v1/governance/audit",
        sync_to_thread=False,
        operation_class=documented(list[AuditEntry], problems=(*AUTH, 422)),
    )
    def audit_log(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        access: NamedDependency[Access],
        after: Annotated[str, whole_query("entries after this sequence number")] = "0",
        limit: Annotated[str, whole_query("entries per page", low=1, high=1000, default=200)] = "200",
    ) -> Response[bytes]:
        """The signed, hash-chained log of every change and vote (members may read it)."""
        access.member(request)
        since = whole_number(after, field="after")
        count = whole_number(limit, field="limit", low=1, high=1000)
        return json_response(node.store.read(lambda c: audit_entries(c, after=since, limit=count)))

    @get(
        "/api/v1/governance/audit/verify",
        sync_to_thread=False,
        operation_class=documented(a.AuditCheck, problems=AUTH),
    )
    def audit_verify(
        self, request: Request[Any, Any, Any], node: NamedDependency[Node], access: NamedDependency[Access]
    ) -> Response[bytes]:
        access.member(request)
        report = node.verify_audit()
        return json_response({"ok": bool(report), **msgspec.to_builtins(report)})

    @post(
        "/api/v1/governance/payouts",
        status_code=201,
        operation_class=documented(PayoutView, body=PayoutRequest, status=201, problems=(*ADMIN, 404, 409)),
    )
    async def payout(
        self, request: Request[Any, Any, Any], node: NamedDependency[Node], access: NamedDependency[Access]
    ) -> Response[bytes]:
        """Split an amount paid for a release between its contributors and the commons.

        A second payout for a release is refused (409) unless ``supersede`` gives the reason.
        """
        admin = access.member(request, admin=True)
        require_json(request)
        data = decode_body(_PAYOUT, await request.body())
        version = _release_number(data.release)
        view = await asyncio.to_thread(
            node.payout,
            version,
            amount=data.amount,
            currency=data.currency,
            actor=admin.name,
            supersede=data.supersede,
        )
        return json_response(view, status=201)

    @get(
        "/api/v1/governance/payouts",
        sync_to_thread=False,
        operation_class=documented(list[PayoutView], problems=ADMIN),
    )
    def payouts(
        self, request: Request[Any, Any, Any], node: NamedDependency[Node], access: NamedDependency[Access]
    ) -> Response[bytes]:
        access.member(request, admin=True)
        return json_response(node.store.read(list_payouts))

    @get(
        "/api/v1/governance/payouts/{payout_id:str}/csv",
        sync_to_thread=False,
        media_type="text/csv",
        operation_class=documented(problems=(*ADMIN, 404)),
    )
    def payout_csv(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        access: NamedDependency[Access],
        payout_id: IdPath,
    ) -> Response[str]:
        access.member(request, admin=True)
        number = whole_number(payout_id, field="payout", low=1, error=NotFoundError)
        found = next((p for p in node.store.read(list_payouts) if p.id == number), None)
        if found is None:
            raise NotFoundError(f"no payout {payout_id}", field="payout")
        return Response(found.ledger.to_csv(), media_type="text/csv")
