"""The node's HTTP app (litestar): one controller per area, assembled with its middleware and documents.

The areas: :mod:`~coop.node.http.ops` (health, metrics, node info, robots.txt),
:mod:`~coop.node.http.releases`, :mod:`~coop.node.http.contributions` (intake and the
member's data rights), :mod:`~coop.node.http.admin` (review), :mod:`~coop.node.http.governance`,
:mod:`~coop.node.http.federation`, :mod:`~coop.node.http.evaluation`, and the web pages
(:mod:`coop.node.web`).  Controllers receive what they act through by dependency injection
(:mod:`~coop.node.http.dependencies`); all errors leave as RFC 9457 problem details through
:mod:`~coop.node.http.problems`.
"""

from __future__ import annotations

import ipaddress

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig

from coop.node.errors import InputError
from coop.node.http.access import Access, AddressLimit
from coop.node.http.access_requests import AccessController
from coop.node.http.admin import AdminController
from coop.node.http.auth import Authenticator
from coop.node.http.clientaddr import TrustedProxies
from coop.node.http.contributions import ContributionsController, Intake
from coop.node.http.dependencies import STATE_KEY, Services, dependencies
from coop.node.http.eval_reports import EvalReportsController
from coop.node.http.evaluation import EvaluationController
from coop.node.http.federation import FederationController, protocol_router
from coop.node.http.gated import GatedController
from coop.node.http.governance import GovernanceController
from coop.node.http.head import HeadAsGet
from coop.node.http.headers import access_log, credentials_not_cached, security_headers
from coop.node.http.ingest import IngestRoute
from coop.node.http.joint import JointController
from coop.node.http.openapi import DocsPage
from coop.node.http.ops import OpsController
from coop.node.http.problems import exception_handlers
from coop.node.http.ratelimit import RateLimiter
from coop.node.http.releases import ReleasesController
from coop.node.runtime import Node
from coop.node.scheduler import Scheduler
from coop.node.web.pages import web_handlers
from coop.node.web.render import template_config

__all__ = ["create_app"]


def _canonical_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise InputError(
            f"node.trusted_proxies: {text!r} is not an IP address", field="node.trusted_proxies"
        ) from None


def create_app(
    node: Node, *, background: bool = True, access: bool = False, scheduler: Scheduler | None = None
) -> Litestar:
    """The ASGI app for one node; ``background`` runs the pipeline scheduler with it, ``access`` logs each response.

    ``scheduler`` (a test's, with a fake clock) replaces the one made here.
    """
    cfg = node.config
    limits = cfg.rate_limit
    address_limit = AddressLimit(RateLimiter(per_minute=limits.per_ip_per_minute, burst=limits.per_ip_burst))
    credentials = Access(
        Authenticator(node.store),
        RateLimiter(per_minute=limits.per_token_per_minute, burst=limits.per_token_burst),
    )
    scheduler = scheduler or Scheduler(node)
    trusted = frozenset(filter(None, (_canonical_ip(a) for a in cfg.node.trusted_proxies)))
    intake = Intake(node.store, salt=node.salt, clock=node.now, poke=scheduler.wake)
    services = Services(node=node, access=credentials, scheduler=scheduler, intake=intake)
    # The local eval interface's token file, made now: a SuperNode reads it before any request comes.
    node.ensure_eval_token()
    web, html_error = web_handlers(node, store=intake.add, poke=scheduler.poke)

    async def start() -> None:
        if background:
            services.scheduler.start()

    async def stop() -> None:
        await services.scheduler.stop()

    app = Litestar(
        # In this order: the OpenAPI document and the page at /schema list the areas so.
        route_handlers=[
            OpsController,
            ReleasesController,
            ContributionsController,
            AdminController,
            GovernanceController,
            AccessController,
            GatedController,
            protocol_router(cfg.federation),
            FederationController,
            JointController,
            EvaluationController,
            EvalReportsController,
            *web,
        ],
        dependencies=dependencies(),
        state=State({STATE_KEY: services}),
        before_request=address_limit.before_request,
        exception_handlers=exception_handlers(html_error),
        template_config=template_config(),
        request_max_body_size=cfg.limits.max_body_bytes,
        on_startup=[start],
        on_shutdown=[stop],
        openapi_config=OpenAPIConfig(
            title=f"Co-op Flywheel node: {cfg.node.name}",
            version="1",
            path="/schema",
            render_plugins=[DocsPage()],  # served from the node: no CDN, no script
        ),
        logging_config=None,
        before_send=[security_headers, credentials_not_cached, *([access_log] if access else [])],
    )
    # The hot intake route is answered before the framework routes (behind the proxy's view).
    fast = IngestRoute(
        HeadAsGet(app.asgi_handler, app),
        app,
        node=node,
        access=credentials,
        intake=intake,
        address_limit=address_limit,
    )
    # Before routing, so every response (a 404 too) sees the client, scheme and host a trusted proxy names.
    app.asgi_handler = TrustedProxies(fast, trusted)
    return app
