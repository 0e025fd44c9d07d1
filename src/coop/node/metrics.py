"""Record-generation metrics: stage yields per intake route, publication per publish channel.

The stages follow the record-generation model: E eligible -> C captured ->
S share prompt shown -> A consent -> T transform ok -> P published.  The node
counts C and A from its contributions (no extra write on the intake path) and
T and P as they happen.  S is counted only from the events an integration
reports (one per prompt shown, whether the member then shares or not), so a
prompted share is never counted twice; a contribution's own ``prompt_shown``
flag only marks its source as prompted.  An integration also reports E (and C
for chats it captured but the member did not send) through the events endpoint.

The second half of the model is per publish channel k (git, hf, site, bluesky),
read from the channel ledger (``channel_records``): P^k, the lifecycle M of a
reviewed channel, throughput Λ_k, retractions D^k and the retraction hazard h_k.
An *intake route* r is where a contribution came in (``contributions.channel``);
a *publish channel* k is where releases go.  Existing fields keep their names
(``stages``/``yields``/``published`` are keyed by intake route).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Final, Protocol

import msgspec

from coop.node.config import ChannelsConfig
from coop.node.contributions.repository import Stage, count_by_state
from coop.node.contributions.stages import captured_by_channel, published_since, stage_totals
from coop.node.releases import channel_metrics as ledger
from coop.node.releases.publications import latest_per_channel
from coop.node.releases.repository import release_count

__all__ = [
    "LIFECYCLE",
    "PUBLISH_CHANNELS",
    "STAGE_ORDER",
    "WINDOWS",
    "ChannelMetrics",
    "JobGauges",
    "MetricsReport",
    "RouteYields",
    "channel_modes",
    "collect",
    "prometheus",
    "prometheus_jobs",
]

STAGE_ORDER: Final = (
    Stage.ELIGIBLE,
    Stage.CAPTURED,
    Stage.PROMPT_SHOWN,
    Stage.CONSENT,
    Stage.TRANSFORM_OK,
    Stage.PUBLISHED,
)
WINDOWS: Final = {"1d": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}
LIFECYCLE: Final = ledger.LIFECYCLE  # M of a record on a publish channel: open, merged, closed, tombstoned
PUBLISH_CHANNELS: Final = ("git", "hf", "site", "bluesky")
# how each publish channel ships: git commits straight ("commit") or opens a review ("review")
_MODES: Final = {"git": "commit", "hf": "commit", "site": "rebuild", "bluesky": "post"}
_NO_CHANNELS: Final = ChannelsConfig()


class JobGauges(Protocol):
    """What /metrics shows of one periodic job (the scheduler's ``JobHealth`` is one)."""

    @property
    def job(self) -> str: ...
    @property
    def age_seconds(self) -> float: ...
    @property
    def last_success(self) -> int | None: ...
    @property
    def failures(self) -> int: ...
    @property
    def consecutive_failures(self) -> int: ...
    @property
    def stale_after_seconds(self) -> float: ...
    @property
    def stale(self) -> bool: ...


class RouteYields(msgspec.Struct, frozen=True, kw_only=True):
    """Stage yields of one intake route r; None where the denominator is 0."""

    p_c: float | None = None  # C/E: captured of eligible
    p_s: float | None = None  # S/C: share prompt shown of captured
    p_a: float | None = None  # A/C: consented of captured
    p_t: float | None = None  # T/A: transformed ok of consented
    p_k: dict[str, float | None] = msgspec.field(default_factory=dict)  # k -> P^k_r / T_r


class ChannelMetrics(msgspec.Struct, frozen=True, kw_only=True):
    """One publish channel k as the ledger sees it (windows are 1d, 7d, 30d of whole days)."""

    mode: str = "commit"  # commit | review | rebuild | post
    published: int = 0  # records with P^k = 1 (ever live on k)
    lifecycle: dict[str, int] = msgspec.field(default_factory=dict)  # M -> records
    throughput: dict[str, float] = msgspec.field(default_factory=dict)  # window -> Λ_k, records/day
    published_window: dict[str, int] = msgspec.field(default_factory=dict)  # window -> first published in it
    retracted: int = 0  # D^k: records that left k after a withdrawal, all time
    retracted_window: dict[str, int] = msgspec.field(default_factory=dict)
    retraction_pending: int = 0  # withdrawn while live on k, not yet retracted from it
    hazard: float | None = None  # h_k: withdrawals per record-week live on k
    record_weeks: float = 0.0  # Σ weeks each record has been live on k (up to its withdrawal)
    yields: dict[str, float | None] = msgspec.field(default_factory=dict)  # route -> p_k


class MetricsReport(msgspec.Struct, frozen=True):
    stages: dict[str, dict[str, int]]  # channel -> stage -> count (all time)
    yields: dict[str, dict[str, float | None]]  # channel -> "captured/eligible" -> ratio
    published: dict[str, dict[str, int]]  # channel -> window -> count
    states: dict[str, int]  # contribution state -> count now
    releases: int
    # publishing channel (git, hf, site) -> its last publication: release version, records,
    # when, and how many releases it lags behind the latest cut
    channels: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    routes: dict[str, RouteYields] = msgspec.field(default_factory=dict)  # intake route -> yields
    publish: dict[str, ChannelMetrics] = msgspec.field(default_factory=dict)  # publish channel -> metrics


def channel_modes(config: ChannelsConfig) -> dict[str, str]:
    """Publish channel -> how it ships, for each channel with a target in ``[channels]``."""
    return {name: _mode(name, config) for name in PUBLISH_CHANNELS if getattr(config, name)}


def _mode(name: str, config: ChannelsConfig) -> str:
    if name == "git" and config.git_mode == "review":
        return "review"
    return _MODES.get(name, "commit")


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def collect(conn: sqlite3.Connection, *, now: int, config: ChannelsConfig = _NO_CHANNELS) -> MetricsReport:
    """Every metric of the model at ``now``; ``config`` is the node's ``[channels]``.

    A publish channel is reported when it has a target in ``config`` or any ledger or
    publication row (shipped to a ``--target`` given on the command line).
    """
    stages: dict[str, dict[str, int]] = {}
    for channel, stage, n in stage_totals(conn):
        stages.setdefault(channel, {s.value: 0 for s in STAGE_ORDER})[stage] = n
    # Every stored contribution was captured with consent; a rectification is not a new one.
    for channel, n in captured_by_channel(conn):
        counts = stages.setdefault(channel, {s.value: 0 for s in STAGE_ORDER})
        counts[Stage.CAPTURED.value] += n
        counts[Stage.CONSENT.value] += n
    yields: dict[str, dict[str, float | None]] = {}
    for channel, counts in stages.items():
        yields[channel] = {}
        for before, after in pairwise(STAGE_ORDER):
            denominator = counts.get(before.value, 0)
            yields[channel][f"{after.value}/{before.value}"] = (
                round(counts.get(after.value, 0) / denominator, 4) if denominator else None
            )
    published: dict[str, dict[str, int]] = {}
    today = now - now % 86_400
    for name, span in WINDOWS.items():
        # Counts are kept per day: a window of d days is today and the d-1 days before.
        for channel, n in published_since(conn, today - span + 86_400):
            published.setdefault(channel, {w: 0 for w in WINDOWS})[name] = n
    states = count_by_state(conn)
    releases, latest = release_count(conn)
    channels: dict[str, dict[str, int]] = {}
    for channel, release, records, at in latest_per_channel(conn):
        number = release.removeprefix("v").split("-r")[0]  # vN, or vN-rK for a revision of it
        version = int(number) if number.isdigit() else 0
        channels[channel] = {"release": version, "records": records, "at": at, "lag": latest - version}
    # the publish channels, from the ledger in one query: per window as ``published`` counts
    totals = ledger.ledger_totals(conn, now=now, since=[today - span + 86_400 for span in WINDOWS.values()])
    names = sorted(
        set(channel_modes(config)) | set(ledger.publication_channels(conn)) | {t.channel for t in totals}
    )
    published_to: dict[str, dict[str, int]] = {}  # route -> k -> P^k_r
    for t in totals:
        published_to.setdefault(t.route, {})[t.channel] = t.published
    routes = {
        r: _route(stages.get(r, {}), {k: published_to.get(r, {}).get(k, 0) for k in names})
        for r in sorted(set(stages) | set(published_to))
    }
    publish = {
        k: _channel(
            _mode(k, config),
            [t for t in totals if t.channel == k],
            {r: y.p_k[k] for r, y in routes.items()},
        )
        for k in names
    }
    return MetricsReport(
        stages=stages,
        yields=yields,
        published=published,
        states=states,
        releases=releases,
        channels=channels,
        routes=routes,
        publish=publish,
    )


def _channel(mode: str, rows: list[ledger.LedgerTotals], yields: dict[str, float | None]) -> ChannelMetrics:
    """One publish channel from its rows of :func:`ledger.ledger_totals` (one per intake route)."""

    def total(field: str) -> int:
        return sum(getattr(row, field) for row in rows)

    def per(field: str, keys: Sequence[str]) -> dict[str, int]:
        return {key: sum(getattr(row, field)[i] for row in rows) for i, key in enumerate(keys)}

    published_window = per("published_window", list(WINDOWS))
    weeks = total("live_seconds") / ledger.WEEK
    return ChannelMetrics(
        mode=mode,
        published=total("published"),
        lifecycle=per("lifecycle", ledger.LIFECYCLE),
        throughput={w: round(published_window[w] / (span // 86_400), 4) for w, span in WINDOWS.items()},
        published_window=published_window,
        retracted=total("retracted"),
        retracted_window=per("retracted_window", list(WINDOWS)),
        retraction_pending=total("pending"),
        # Below one record-week of exposure a rate per record-week says nothing (one withdrawal an
        # hour after the first publish would read as thousands): null until there is a week.
        hazard=round(total("withdrawals") / weeks, 4) if weeks >= 1 else None,
        record_weeks=round(weeks, 4),
        yields=yields,
    )


def _route(counts: dict[str, int], published: dict[str, int]) -> RouteYields:
    """p_c, p_s, p_a, p_t of one intake route from its stage counts, and p_k = P^k_r / T_r."""
    e, c, s, a, t = (counts.get(stage.value, 0) for stage in STAGE_ORDER[:5])
    p_k = {k: _ratio(n, t) for k, n in published.items()}
    return RouteYields(
        p_c=_ratio(c, e), p_s=_ratio(s, c) if s else None, p_a=_ratio(a, c), p_t=_ratio(t, a), p_k=p_k
    )


_ESCAPES: Final = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})


def _labels(**pairs: str) -> str:
    """``{name="value",...}``, each value escaped as the text format requires."""
    return "{" + ",".join(f'{name}="{value.translate(_ESCAPES)}"' for name, value in pairs.items()) + "}"


def prometheus(report: MetricsReport) -> str:
    """The Prometheus text exposition format (version 0.0.4), written by hand.

    Not through ``prometheus-client``: it would rename the ``coop_releases`` counter to
    ``coop_releases_total`` (dashboards read the old name), render 25x slower and add
    ~0.1 s of imports; measured in issue 12 (the test parses this output with its parser).
    """
    lines = [
        "# HELP coop_stage_total Contributions reaching each stage of the record-generation model.",
        "# TYPE coop_stage_total counter",
    ]
    for channel, counts in sorted(report.stages.items()):
        for stage, n in counts.items():
            lines.append(f"coop_stage_total{_labels(channel=channel, stage=stage)} {n}")
    lines += [
        "# HELP coop_stage_yield Share of the previous stage that reached this one.",
        "# TYPE coop_stage_yield gauge",
    ]
    for channel, ratios in sorted(report.yields.items()):
        for step, value in ratios.items():
            if value is not None:
                to, frm = step.split("/")
                lines.append(f"coop_stage_yield{_labels(channel=channel, **{'from': frm}, to=to)} {value}")
    lines += [
        "# HELP coop_published_window Records first published in the window.",
        "# TYPE coop_published_window gauge",
    ]
    for channel, windows in sorted(report.published.items()):
        for window, n in windows.items():
            lines.append(f"coop_published_window{_labels(channel=channel, window=window)} {n}")
    lines += [
        "# HELP coop_contributions Contributions by state.",
        "# TYPE coop_contributions gauge",
    ]
    for state, n in sorted(report.states.items()):
        lines.append(f"coop_contributions{_labels(state=state)} {n}")
    lines += [
        "# HELP coop_releases Releases cut.",
        "# TYPE coop_releases counter",
        f"coop_releases {report.releases}",
        "# HELP coop_channel_release The last release each publishing channel holds.",
        "# TYPE coop_channel_release gauge",
    ]
    lines += [
        f"coop_channel_release{_labels(channel=c)} {v['release']}" for c, v in sorted(report.channels.items())
    ]
    lines += [
        "# HELP coop_channel_lag Releases cut but not yet published to the channel.",
        "# TYPE coop_channel_lag gauge",
    ]
    lines += [f"coop_channel_lag{_labels(channel=c)} {v['lag']}" for c, v in sorted(report.channels.items())]
    lines += [
        "# HELP coop_channel_published_timestamp_seconds When the channel last received a release.",
        "# TYPE coop_channel_published_timestamp_seconds gauge",
    ]
    lines += [
        f"coop_channel_published_timestamp_seconds{_labels(channel=c)} {v['at']}"
        for c, v in sorted(report.channels.items())
    ]
    return "\n".join(lines + _model_lines(report)) + "\n"


def _family(
    name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float | None]]
) -> list[str]:
    """One family's HELP, TYPE and samples; a sample without a value (no denominator) is left out."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    return lines + [f"{name}{_labels(**labels)} {value}" for labels, value in samples if value is not None]


def _model_lines(report: MetricsReport) -> list[str]:
    """Yields per intake route and the ledger per publish channel (issue 16)."""
    routes = sorted(report.routes.items())
    publish = sorted(report.publish.items())
    steps = ("p_c", "p_s", "p_a", "p_t")
    return [
        *_family(
            "coop_route_yield",
            "gauge",
            "Stage yield per intake route: p_c=C/E, p_s=S/C, p_a=A/C, p_t=T/A.",
            [({"route": r, "step": step}, getattr(y, step)) for r, y in routes for step in steps],
        ),
        *_family(
            "coop_publish_yield",
            "gauge",
            "p_k: records of an intake route published to channel k, over those transformed ok (P^k/T).",
            [({"route": r, "channel": k}, v) for r, y in routes for k, v in sorted(y.p_k.items())],
        ),
        *_family(
            "coop_channel_records",
            "gauge",
            "Records on each publish channel by lifecycle state M (open, merged, closed, tombstoned).",
            [({"channel": k, "state": s}, n) for k, m in publish for s, n in m.lifecycle.items()],
        ),
        *_family(
            "coop_channel_published_records",
            "gauge",
            "P^k: records ever published to the channel.",
            [({"channel": k}, m.published) for k, m in publish],
        ),
        *_family(
            "coop_channel_throughput",
            "gauge",
            "Lambda_k: records first published to the channel per day over the window.",
            [({"channel": k, "window": w}, v) for k, m in publish for w, v in m.throughput.items()],
        ),
        *_family(
            "coop_channel_published_records_window",
            "gauge",
            "Records first published to the channel in the window.",
            [({"channel": k, "window": w}, n) for k, m in publish for w, n in m.published_window.items()],
        ),
        *_family(
            "coop_channel_retractions_total",
            "counter",
            "D^k: withdrawn records retracted from the channel.",
            [({"channel": k}, m.retracted) for k, m in publish],
        ),
        *_family(
            "coop_channel_retractions_window",
            "gauge",
            "Withdrawn records retracted from the channel in the window.",
            [({"channel": k, "window": w}, n) for k, m in publish for w, n in m.retracted_window.items()],
        ),
        *_family(
            "coop_channel_retraction_pending",
            "gauge",
            "Withdrawn records still live on the channel until its next publish.",
            [({"channel": k}, m.retraction_pending) for k, m in publish],
        ),
        *_family(
            "coop_channel_retraction_hazard",
            "gauge",
            "h_k: withdrawals per record-week live on the channel.",
            [({"channel": k}, m.hazard) for k, m in publish],
        ),
        *_family(
            "coop_channel_record_weeks",
            "gauge",
            "Record-weeks live on the channel (the hazard's denominator).",
            [({"channel": k}, m.record_weeks) for k, m in publish],
        ),
    ]


def prometheus_jobs(jobs: Sequence[JobGauges]) -> str:
    """The serving node's background jobs: age of the last success, failures, staleness."""
    gauges: list[tuple[str, str, str, Callable[[JobGauges], float | None]]] = [
        (
            "coop_job_last_success_age_seconds",
            "gauge",
            "Seconds since the job last succeeded (since the server started, before its first success).",
            lambda j: j.age_seconds,
        ),
        (
            "coop_job_last_success_timestamp_seconds",
            "gauge",
            "When the job last succeeded (Unix time; absent before its first success).",
            lambda j: j.last_success,
        ),
        ("coop_job_failures_total", "counter", "Failed runs since the server started.", lambda j: j.failures),
        (
            "coop_job_consecutive_failures",
            "gauge",
            "Failed runs in a row (0 when the last run succeeded).",
            lambda j: j.consecutive_failures,
        ),
        (
            "coop_job_stale_after_seconds",
            "gauge",
            "Age beyond which /healthz calls the job stale.",
            lambda j: j.stale_after_seconds,
        ),
        (
            "coop_job_stale",
            "gauge",
            "1 when the job is stale (/healthz answers 503, unless the job is advisory).",
            lambda j: int(j.stale),
        ),
    ]
    if not jobs:
        return ""
    lines: list[str] = []
    for name, kind, help_text, value in gauges:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for job in jobs:
            v = value(job)
            if v is not None:
                lines.append(f"{name}{_labels(job=job.job)} {v}")
    return "\n".join(lines) + "\n"
