"""The funnel page's charts: where records are lost between intake and each publish channel, and when.

For ``GET /admin/funnel`` (:mod:`coop.node.web.funnel`): per intake route, the stage
funnel E -> C -> S -> A -> T -> P^k with the weakest step marked, the publish channels'
ledger numbers, and 90 days of records published and retracted per publish channel with
policy changes marked.  The same function builds the static site's public ``funnel/``
page, which shows aggregates only: stage counts and yields per route (P bars only for the
channels that published at least once) and per-channel daily publications (no withdrawals,
no policy markers, never a record or actor).

Kept apart from the page controller: the static site imports this without the web app,
whose modules import one another through :mod:`coop.node.web.site`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from coop.node import funnel
from coop.node.runtime import Node
from coop.node.web.charts import funnel_chart, time_chart

__all__ = ["DAYS", "bar_channels", "funnel_context"]

DAYS: Final = 90


def _channel_rows(report: Any) -> list[dict[str, Any]]:
    """The publish channels' ledger numbers (``MetricsReport.publish``; empty before it exists)."""
    rows = []
    for name, m in sorted((getattr(report, "publish", None) or {}).items()):
        lifecycle = getattr(m, "lifecycle", {}) or {}
        throughput = getattr(m, "throughput", {}) or {}
        hazard = getattr(m, "hazard", None)
        rows.append(
            {
                "channel": name,
                "mode": getattr(m, "mode", ""),
                "published": getattr(m, "published", 0),
                "open": lifecycle.get("open", 0),
                "merged": lifecycle.get("merged", 0),
                "closed": lifecycle.get("closed", 0),
                "tombstoned": lifecycle.get("tombstoned", 0),
                "per_day_7d": round(float(throughput.get("7d", 0.0)), 2),
                "retracted": getattr(m, "retracted", 0),
                "pending": getattr(m, "retraction_pending", 0),
                "hazard": None if hazard is None else round(float(hazard), 4),
            }
        )
    return rows


def bar_channels(
    report: Any, ledger: Mapping[str, Mapping[str, int]], per_day: Mapping[str, Any], *, public: bool
) -> list[str]:
    """The publish channels that get a P bar in every route's funnel.

    The admin page shows each configured or ledgered channel, a P of 0 included (a target
    that never published is worth seeing there).  The public page shows only the channels
    that published a record at least once: a channel configured but never used would
    otherwise read as the weakest step of every route.
    """
    published = {k for per in ledger.values() for k, n in per.items() if n > 0}
    if public:
        return sorted(published)
    return sorted(
        set(getattr(report, "publish", None) or {}) | set(report.channels) | set(per_day) | published
    )


def funnel_context(node: Node, *, public: bool) -> dict[str, Any]:
    """The charts (SVG + table markup) and numbers of the funnel page, for the node or the static site."""
    report = node.metrics()
    now = node.now()
    ledger = node.store.read(funnel.published_by_route)
    days = node.store.read(lambda c: funnel.series(c, now=now, days=DAYS))
    channels = bar_channels(report, ledger, days.published, public=public)
    routes = []
    for route in sorted(set(report.stages) | set(ledger)):
        steps = funnel.route_funnel(report.stages.get(route, {}), ledger.get(route, {}), channels)
        weakest = funnel.weakest_step(steps)
        routes.append(
            {
                "route": route,
                "weakest": weakest,
                "chart": funnel_chart(
                    steps,
                    weakest=weakest,
                    chart_id=f"funnel-{route}",
                    title=f"Funnel of the {route} route",
                ),
            }
        )
    markers = [] if public else days.markers
    published = time_chart(
        chart_id="published-per-day",
        title="Records published per day, per publish channel",
        desc="Records that went live on each publish channel each day (UTC).",
        dates=days.dates,
        lines=days.published,
        markers=markers,
    )
    retracted = None
    if not public:
        lines = {f"retracted from {k}": v for k, v in days.retracted.items()}
        lines["withdrawn by members"] = days.withdrawals
        retracted = time_chart(
            chart_id="retracted-per-day",
            title="Records withdrawn and retracted per day",
            desc="Records their members withdrew, and records taken off each publish channel, each day (UTC).",
            dates=days.dates,
            lines=lines,
            markers=markers,
        )
    return {
        "routes": routes,
        "channels": [] if public else _channel_rows(report),
        "published_chart": published,
        "retracted_chart": retracted,
        "days": DAYS,
        "public": public,
    }
