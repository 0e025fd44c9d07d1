"""The web pages: contribute, my data, admin, governance and the public catalogue, as one router.

Every page is rendered on the server and every form posts without
JavaScript.  A member signs in once with their token; the browser then keeps
a session cookie, and every form carries the session's CSRF token.  Errors
are the API's problem details, shown in words next to the field they name.

Each area is a Litestar controller in its own module; :func:`web_handlers` is
the one door :mod:`coop.node.http.app` mounts them by.
"""

from __future__ import annotations

from collections.abc import Callable

from litestar.router import Router

from coop.node.http.problems import HtmlRenderer
from coop.node.runtime import Node
from coop.node.web.access import AccessPages
from coop.node.web.admin import AdminPages
from coop.node.web.contribute import ContributePages
from coop.node.web.feed import FeedPages
from coop.node.web.funnel import FunnelPages
from coop.node.web.governance import GovernancePages
from coop.node.web.highlights import HighlightPages
from coop.node.web.joint import JointPages
from coop.node.web.member import MemberPages
from coop.node.web.public import PublicPages
from coop.node.web.signin import SignInPages
from coop.node.web.site import (
    SignInRequiredError,
    StoreContribution,
    WebSite,
    page_dependencies,
    sign_in_redirect,
)

__all__ = ["CONTROLLERS", "StoreContribution", "web_handlers"]

CONTROLLERS = (
    PublicPages,
    FeedPages,
    GovernancePages,
    JointPages,
    SignInPages,
    ContributePages,
    MemberPages,
    AdminPages,
    HighlightPages,
    FunnelPages,
    AccessPages,
)


def web_handlers(
    node: Node,
    *,
    store: StoreContribution,
    poke: Callable[[], None],
) -> tuple[list[Router], HtmlRenderer]:
    """The page routes (the static files among them), and the renderer for error pages."""
    site = WebSite(node, store=store, poke=poke)
    pages = Router(
        path="/",
        route_handlers=list(CONTROLLERS),
        dependencies=page_dependencies(site),
        exception_handlers={SignInRequiredError: sign_in_redirect},
        include_in_schema=False,
    )
    return [pages], site.html_error
