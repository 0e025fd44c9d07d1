"""Operating the node: who it is, whether it is healthy, its metrics, and robots.txt."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency

from coop.node.http import answers as a
from coop.node.http.controller import AreaController, json_response
from coop.node.http.openapi import documented
from coop.node.metrics import MetricsReport, prometheus, prometheus_jobs
from coop.node.releases.model import robots_txt
from coop.node.releases.repository import list_releases
from coop.node.runtime import Node
from coop.node.scheduler import Scheduler
from coop.node.storage.store import schema_version

__all__ = ["OpsController"]


class OpsController(AreaController):
    """Public routes for people and machines that watch or describe the node."""

    @get("/api/v1/node", sync_to_thread=False, operation_class=documented(a.NodeInfo))
    def node_info(self, node: NamedDependency[Node]) -> Response[bytes]:
        """Who this node is and the defaults a contribution gets."""
        return json_response(
            {
                "node_id": node.identity.node_id,
                "fingerprint": node.identity.fingerprint,
                "name": node.config.node.name,
                "terms_version": node.config.node.terms_version,
                "defaults": node.settings().settings.defaults,
                "limits": node.config.limits,
            }
        )

    @get("/healthz", sync_to_thread=False, operation_class=documented(a.Health, also=(503,)))
    def healthz(self, node: NamedDependency[Node], scheduler: NamedDependency[Scheduler]) -> Response[bytes]:
        """Alive and able to read its database (a storage fault answers 500, as problem details);
        503 naming the background job (pipeline, gossip, ...) that has not succeeded for too long.
        An advisory job (the git reviews check, which depends on a third party) shows in ``jobs``
        but is never named in ``stale``."""
        schema = node.store.read(schema_version)
        settings = node.settings().settings
        jobs = scheduler.health()
        stale = [j.job for j in jobs if j.stale and not j.advisory]
        return json_response(
            {
                "status": "stale" if stale else "ok",
                "schema": schema,
                "embargo": settings.embargo.on,
                "quality_freeze": settings.quality_freeze,
                "stale": stale,
                "jobs": {j.job: j for j in jobs},
                # Peers whose clock is off from ours (this node's minus theirs): federation
                # refuses beyond a few minutes, so say it before it does.
                "clock_skew": {p["node_id"]: p["text"] for p in node.federation.skewed_peers()},
                # Why this node issues no manifests (its own chain was forked), or null.
                "federation_halted": node.federation.own_fork(),
            },
            status=503 if stale else 200,
        )

    @get("/metrics", sync_to_thread=False, media_type="text/plain", operation_class=documented())
    def metrics_text(
        self, node: NamedDependency[Node], scheduler: NamedDependency[Scheduler]
    ) -> Response[str]:
        text = prometheus(node.metrics()) + prometheus_jobs(scheduler.health())
        return Response(text, media_type="text/plain; version=0.0.4")

    @get("/api/v1/metrics", sync_to_thread=False, operation_class=documented(MetricsReport))
    def metrics_json(self, node: NamedDependency[Node]) -> Response[bytes]:
        return json_response(node.metrics())

    @get("/robots.txt", sync_to_thread=False, media_type="text/plain", operation_class=documented())
    def robots(self, node: NamedDependency[Node]) -> Response[str]:
        releases = node.store.read(list_releases)
        fallback = node.settings().settings.defaults.ai_use
        text = robots_txt(node.config.node.name, releases, fallback=fallback, disallow=("/api/",))
        return Response(text, media_type="text/plain")
