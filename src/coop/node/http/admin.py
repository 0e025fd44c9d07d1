"""The admins' review: the waiting room, quarantine decisions, processing, cutting releases, retention."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from coop.governance import parse_enum
from coop.node.contributions import repository as contrib
from coop.node.contributions.repository import BatchReport, ContributionView, Decision
from coop.node.contributions.retention import RetentionItem
from coop.node.errors import NotFoundError
from coop.node.http import answers as a
from coop.node.http.access import Access
from coop.node.http.controller import AreaController, json_response
from coop.node.http.openapi import ADMIN, documented
from coop.node.intake.redaction import redact
from coop.node.releases.model import ReleaseSummary
from coop.node.runtime import Node

__all__ = ["AdminController"]


class AdminController(AreaController):
    """Admin-only routes (every handler first checks an admin's token)."""

    @get(
        "/api/v1/admin/waiting-room",
        sync_to_thread=False,
        operation_class=documented(list[ContributionView], problems=ADMIN),
    )
    def waiting_room(
        self, request: Request[Any, Any, Any], node: NamedDependency[Node], access: NamedDependency[Access]
    ) -> Response[bytes]:
        access.member(request, admin=True)
        return json_response(node.store.read(lambda c: contrib.list_by_state(c, contrib.S.WAITING)))

    @get(
        "/api/v1/admin/quarantine",
        sync_to_thread=False,
        operation_class=documented(list[ContributionView], problems=ADMIN),
    )
    def quarantine(
        self, request: Request[Any, Any, Any], node: NamedDependency[Node], access: NamedDependency[Access]
    ) -> Response[bytes]:
        access.member(request, admin=True)
        return json_response(node.store.read(lambda c: contrib.list_by_state(c, contrib.S.QUARANTINED)))

    @get(
        "/api/v1/admin/quarantine/{uid:str}",
        sync_to_thread=True,  # it redacts every message: off the event loop
        operation_class=documented(a.QuarantineItem, problems=(*ADMIN, 404)),
    )
    def quarantine_item(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        access: NamedDependency[Access],
        uid: FromPath[str],
    ) -> Response[bytes]:
        """A quarantined entry as submitted, with what the redactor found in each message."""
        access.member(request, admin=True)
        detail = node.store.read(lambda c: contrib.get_contribution(c, uid))
        if detail is None or detail.view.state is not contrib.S.QUARANTINED:
            raise NotFoundError(f"no quarantined contribution {uid}", field="uid")
        hits = []
        if detail.submission is not None:
            hits = [redact(m.content).hits for m in detail.submission.chat.messages]
        return json_response({"contribution": detail.view, "submission": detail.submission, "hits": hits})

    @post(
        "/api/v1/admin/quarantine/{uid:str}/{decision:str}",
        status_code=200,
        operation_class=documented(a.Decided, problems=(*ADMIN, 404, 409, 422)),
    )
    async def decide(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        access: NamedDependency[Access],
        uid: FromPath[str],
        decision: FromPath[str],
    ) -> Response[bytes]:
        admin = access.member(request, admin=True)
        choice = parse_enum(Decision, decision, field="decision")
        state = await asyncio.to_thread(node.decide_quarantine, uid, choice, admin=admin.name)
        return json_response({"uid": uid, "state": state, "decided_by": admin.name})

    @post(
        "/api/v1/admin/process",
        status_code=200,
        operation_class=documented(BatchReport, problems=(*ADMIN, 409)),
    )
    async def process(
        self, request: Request[Any, Any, Any], node: NamedDependency[Node], access: NamedDependency[Access]
    ) -> Response[bytes]:
        access.member(request, admin=True)
        report = await asyncio.to_thread(node.process_pending)
        return json_response(report)

    @post(
        "/api/v1/admin/releases",
        status_code=201,
        operation_class=documented(ReleaseSummary, status=201, problems=(*ADMIN, 409)),
    )
    async def release(
        self, request: Request[Any, Any, Any], node: NamedDependency[Node], access: NamedDependency[Access]
    ) -> Response[bytes]:
        admin = access.member(request, admin=True)
        summary = await asyncio.to_thread(node.cut_release, actor=admin.name)
        return json_response(summary, status=201, headers={"Location": f"/releases/{summary.name}"})

    @get(
        "/api/v1/admin/retention",
        sync_to_thread=False,
        operation_class=documented(list[RetentionItem], problems=ADMIN),
    )
    def retention(
        self, request: Request[Any, Any, Any], node: NamedDependency[Node], access: NamedDependency[Access]
    ) -> Response[bytes]:
        access.member(request, admin=True)
        return json_response(node.retention_report())
