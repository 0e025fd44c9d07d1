"""The funnel page, ``GET /admin/funnel``: for the co-op's admins only, like the dashboard.

What it draws is :func:`coop.node.web.funnel_charts.funnel_context`'s (shared with the static site).
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.response import Template

from coop.node.members.sessions import WebSession
from coop.node.web.funnel_charts import funnel_context
from coop.node.web.site import WebSite

__all__ = ["FunnelPages"]

Site = NamedDependency[WebSite]
Admin = NamedDependency[WebSession]


class FunnelPages(Controller):
    """For the co-op's admins only (the ``admin`` dependency: 403 for members, sign-in for visitors)."""

    path = "/"

    @get("/admin/funnel", sync_to_thread=True)  # counts over the ledger and audit log: off the loop
    def admin_funnel(self, request: Request[Any, Any, Any], site: Site, admin: Admin) -> Template:
        return site.page(request, admin, "admin_funnel.html", **funnel_context(site.node, public=False))
