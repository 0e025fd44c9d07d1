"""/metrics reads as Prometheus reads it: every family with its type and labels, values escaped.

The text is written by hand (coop.node.metrics says why); prometheus-client's own parser is the
judge here, so a malformed line, a wrong type or a renamed metric fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from coop.node.http.app import create_app
from coop.node.metrics import ChannelMetrics, MetricsReport, RouteYields, prometheus, prometheus_jobs
from coop.node.scheduler import Job, JobHealth, Scheduler

from factories import contribute, make_member, make_node, process

# family (as the parser names it: a counter without its _total) -> (type, label names, sample name)
FAMILIES = {
    "coop_stage": ("counter", {"channel", "stage"}, "coop_stage_total"),
    "coop_stage_yield": ("gauge", {"channel", "from", "to"}, "coop_stage_yield"),
    "coop_published_window": ("gauge", {"channel", "window"}, "coop_published_window"),
    "coop_contributions": ("gauge", {"state"}, "coop_contributions"),
    "coop_releases": ("counter", set(), "coop_releases_total"),
    "coop_channel_release": ("gauge", {"channel"}, "coop_channel_release"),
    "coop_channel_lag": ("gauge", {"channel"}, "coop_channel_lag"),
    "coop_channel_published_timestamp_seconds": (
        "gauge",
        {"channel"},
        "coop_channel_published_timestamp_seconds",
    ),
    # the model per intake route and per publish channel (issue 16)
    "coop_route_yield": ("gauge", {"route", "step"}, "coop_route_yield"),
    "coop_publish_yield": ("gauge", {"route", "channel"}, "coop_publish_yield"),
    "coop_channel_records": ("gauge", {"channel", "state"}, "coop_channel_records"),
    "coop_channel_published_records": ("gauge", {"channel"}, "coop_channel_published_records"),
    "coop_channel_throughput": ("gauge", {"channel", "window"}, "coop_channel_throughput"),
    "coop_channel_published_records_window": (
        "gauge",
        {"channel", "window"},
        "coop_channel_published_records_window",
    ),
    "coop_channel_retractions": ("counter", {"channel"}, "coop_channel_retractions_total"),
    "coop_channel_retractions_window": ("gauge", {"channel", "window"}, "coop_channel_retractions_window"),
    "coop_channel_retraction_pending": ("gauge", {"channel"}, "coop_channel_retraction_pending"),
    "coop_channel_retraction_hazard": ("gauge", {"channel"}, "coop_channel_retraction_hazard"),
    "coop_channel_record_weeks": ("gauge", {"channel"}, "coop_channel_record_weeks"),
}
JOB_FAMILIES = {
    "coop_job_last_success_age_seconds": "gauge",
    "coop_job_last_success_timestamp_seconds": "gauge",
    "coop_job_failures": "counter",
    "coop_job_consecutive_failures": "gauge",
    "coop_job_stale_after_seconds": "gauge",
    "coop_job_stale": "gauge",
}


def _report(channel: str = "api") -> MetricsReport:
    return MetricsReport(
        stages={channel: {"eligible": 4, "captured": 3, "consent": 3}},
        yields={channel: {"captured/eligible": 0.75, "consent/captured": None}},
        published={channel: {"1d": 1, "7d": 2, "30d": 3}},
        states={"accepted": 2, "released": 1},
        releases=1,
        channels={"git": {"release": 1, "records": 3, "at": 1_700_000_000, "lag": 0}},
        routes={channel: RouteYields(p_c=0.75, p_s=None, p_a=1.0, p_t=0.5, p_k={"git": 0.5})},
        publish={
            "git": ChannelMetrics(
                mode="review",
                published=2,
                lifecycle={"open": 1, "merged": 2, "closed": 0, "tombstoned": 1},
                throughput={"1d": 1.0, "7d": 0.2857, "30d": 0.0667},
                published_window={"1d": 1, "7d": 2, "30d": 2},
                retracted=1,
                retracted_window={"1d": 0, "7d": 1, "30d": 1},
                retraction_pending=0,
                hazard=0.5,
                record_weeks=2.0,
                yields={channel: 0.5},
            )
        },
    )


def _jobs() -> list[JobHealth]:
    return [
        JobHealth(
            job=job,
            interval_seconds=2.0,
            age_seconds=1.5,
            last_success=1_700_000_000,
            failures=0,
            consecutive_failures=0,
            stale_after_seconds=120.0,
            stale=False,
        )
        for job in Job
    ]


def _families(text: str) -> dict[str, tuple[str, set[str], set[str]]]:
    """family -> (type, label names, sample names), as prometheus-client parses the text."""
    parsed: dict[str, tuple[str, set[str], set[str]]] = {}
    for family in text_string_to_metric_families(text):
        labels = {name for sample in family.samples for name in sample.labels}
        parsed[family.name] = (family.type, labels, {s.name for s in family.samples})
    return parsed


def test_metrics_text_parses_with_each_family_typed_and_labelled() -> None:
    parsed = _families(prometheus(_report()) + prometheus_jobs(_jobs()))
    for name, (kind, labels, sample) in FAMILIES.items():
        assert parsed[name] == (kind, labels, {sample}), name
    for name, kind in JOB_FAMILIES.items():
        assert parsed[name][:2] == (kind, {"job"}), name
    assert set(parsed) == set(FAMILIES) | set(JOB_FAMILIES)


def test_metrics_text_yield_without_a_denominator_is_left_out() -> None:
    (family,) = [
        f for f in text_string_to_metric_families(prometheus(_report())) if f.name == "coop_stage_yield"
    ]
    assert [(s.labels["from"], s.labels["to"], s.value) for s in family.samples] == [
        ("eligible", "captured", 0.75)
    ]
    (family,) = [
        f for f in text_string_to_metric_families(prometheus(_report())) if f.name == "coop_route_yield"
    ]
    assert [(s.labels["step"], s.value) for s in family.samples] == [
        ("p_c", 0.75),
        ("p_a", 1.0),
        ("p_t", 0.5),
    ]


@pytest.mark.parametrize("value", ['say "hi"', "back\\slash", "two\nlines"])
def test_metrics_text_label_value_is_escaped_and_reads_back_whole(value: str) -> None:
    parsed = list(text_string_to_metric_families(prometheus(_report(channel=value))))
    channels = {s.labels["channel"] for f in parsed if f.name == "coop_stage" for s in f.samples}
    assert channels == {value}
    routes = {s.labels["route"] for f in parsed if f.name == "coop_publish_yield" for s in f.samples}
    assert routes == {value}


def test_metrics_endpoint_of_a_node_with_records_parses_as_prometheus_reads_it(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    member, _ = make_member(node)
    for _ in range(2):
        contribute(node, member, license="CC0-1.0", scope="public")
    process(node)
    node.cut_release()
    scheduler = Scheduler(node)
    scheduler.track()
    with TestClient(create_app(node, background=False, scheduler=scheduler)) as client:
        response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    parsed = _families(response.text)
    for name in (
        "coop_stage",
        "coop_stage_yield",
        "coop_published_window",
        "coop_contributions",
        "coop_releases",
    ):
        kind, labels, sample = FAMILIES[name]
        assert parsed[name] == (kind, labels, {sample}), name
    for name, kind in JOB_FAMILIES.items():  # before a job's first success: no timestamp sample
        assert parsed[name][0] == kind and parsed[name][1] <= {"job"}, name
    assert parsed["coop_job_stale"][1] == {"job"}
    released = {s.labels["state"]: s.value for f in text_string_to_metric_families(response.text)
                if f.name == "coop_contributions" for s in f.samples}  # fmt: skip
    assert released.get("released") == 2
