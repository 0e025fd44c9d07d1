"""HTTP routes of published eval reports: an admin publishes or removes one; anyone reads what consent allows.

``GET /api/v1/eval/reports`` is the same consent-filtered view the leaderboard page shows
(:func:`coop.eval.consent_view`); ``GET /eval/reports/<hash>.json`` serves the exact signed
bytes, and only of a report whose every co-op consented to be named.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from coop.eval import PublishedView
from coop.governance.envelope import Envelope
from coop.node.errors import NotFoundError
from coop.node.evaluation.published import MAX_REPORT_BYTES
from coop.node.http.access import Access
from coop.node.http.controller import JSON, AreaController, json_response, require_json
from coop.node.http.openapi import ADMIN, documented
from coop.node.runtime import Node

__all__ = ["EvalReportsController"]


class EvalReportsController(AreaController):
    """Published eval reports: admins publish and unpublish; the views are public."""

    @post(
        "/api/v1/admin/eval/reports",
        status_code=201,
        request_max_body_size=MAX_REPORT_BYTES,
        operation_class=documented(
            PublishedView, body=Envelope, status=201, problems=(*ADMIN, 409, 413, 415)
        ),
    )
    async def publish(
        self, request: Request[Any, Any, Any], node: NamedDependency[Node], access: NamedDependency[Access]
    ) -> Response[bytes]:
        """Publish a signed eval report (the body: its exact bytes); one that does not verify is refused."""
        admin = access.member(request, admin=True)
        require_json(request)
        data = await request.body()
        view = await asyncio.to_thread(node.eval_reports.publish, data, actor=admin.name)
        return json_response(view, status=201)

    @delete(
        "/api/v1/admin/eval/reports/{digest:str}",
        status_code=200,
        operation_class=documented(dict[str, str], problems=(*ADMIN, 404, 422)),
    )
    async def unpublish(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        access: NamedDependency[Access],
        digest: FromPath[str],
    ) -> Response[bytes]:
        """Take a published report off the pages (audited)."""
        admin = access.member(request, admin=True)
        removed = await asyncio.to_thread(node.eval_reports.unpublish, digest, actor=admin.name)
        return json_response({"unpublished": removed})

    @get(
        "/api/v1/eval/reports",
        sync_to_thread=False,
        operation_class=documented(list[PublishedView]),
    )
    def reports(self, node: NamedDependency[Node]) -> Response[bytes]:
        """Published reports, each co-op's numbers as its consent allows."""
        return json_response(node.eval_reports.listing())

    @get(
        "/eval/reports/{name:str}",
        sync_to_thread=False,
        operation_class=documented(files=(JSON,), problems=(404,)),
    )
    def download(self, node: NamedDependency[Node], name: FromPath[str]) -> Response[bytes]:
        """The signed report as published (``<hash>.json``), when every co-op in it consented to be named."""
        if not name.endswith(".json"):
            raise NotFoundError("a report is named <hash>.json", field="name")
        data = node.eval_reports.download(name.removesuffix(".json"))
        return Response(
            data,
            media_type=JSON,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
