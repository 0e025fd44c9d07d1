"""Record-generation metrics: stage counts and yields per intake channel, published per window.

The stages follow the record-generation model: E eligible -> C captured ->
S share prompt shown -> A consent -> T transform ok -> P published.  The node
counts C and A from its contributions (no extra write on the intake path) and
T and P as they happen.  S is counted only from the events an integration
reports (one per prompt shown, whether the member then shares or not), so a
prompted share is never counted twice; a contribution's own ``prompt_shown``
flag only marks its source as prompted.  An integration also reports E (and C
for chats it captured but the member did not send) through the events endpoint.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Final, Protocol

import msgspec

from coop.node.contributions.repository import Stage, count_by_state
from coop.node.contributions.stages import captured_by_channel, published_since, stage_totals
from coop.node.releases.publications import latest_per_channel
from coop.node.releases.repository import release_count

__all__ = ["STAGE_ORDER", "WINDOWS", "JobGauges", "MetricsReport", "collect", "prometheus", "prometheus_jobs"]

STAGE_ORDER: Final = (
    Stage.ELIGIBLE,
    Stage.CAPTURED,
    Stage.PROMPT_SHOWN,
    Stage.CONSENT,
    Stage.TRANSFORM_OK,
    Stage.PUBLISHED,
)
WINDOWS: Final = {"1d": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}


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


class MetricsReport(msgspec.Struct, frozen=True):
    stages: dict[str, dict[str, int]]  # channel -> stage -> count (all time)
    yields: dict[str, dict[str, float | None]]  # channel -> "captured/eligible" -> ratio
    published: dict[str, dict[str, int]]  # channel -> window -> count
    states: dict[str, int]  # contribution state -> count now
    releases: int
    # publishing channel (git, hf, site) -> its last publication: release version, records,
    # when, and how many releases it lags behind the latest cut
    channels: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)


def collect(conn: sqlite3.Connection, *, now: int) -> MetricsReport:
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
    return MetricsReport(
        stages=stages,
        yields=yields,
        published=published,
        states=states,
        releases=releases,
        channels=channels,
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
    return "\n".join(lines) + "\n"


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
            "1 when the job is stale (/healthz answers 503).",
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
