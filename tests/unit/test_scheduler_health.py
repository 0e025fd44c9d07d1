"""Issue 11 item 11: no exception ends a scheduler loop; every job's last success shows in /healthz and /metrics.

The loops run against a fake node and a fake clock: each wait the loop asks for is recorded
and moves the clock on by that much, so back-off and staleness are checked without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from coop.node.channels.base import ChannelError
from coop.node.config import Config, HealthConfig, NodeSection, PipelineConfig, load_config, write_config
from coop.node.contributions.repository import BatchReport
from coop.node.contributions.retention import PurgeReport
from coop.node.errors import BusyError, StorageError
from coop.node.http.app import create_app
from coop.node.logs import FORMAT, EscapingFormatter
from coop.node.runtime import Node
from coop.node.scheduler import Job, JobHealth, Scheduler, backoff
from coop.node.storage.datadir import DataDir

from factories import make_node


class _StopError(Exception):
    """Ends a loop under test after a bounded number of waits."""


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[tuple[float, bool]] = []  # (delay, a poke could cut it short)
        self.snapshots: list[dict[Job, JobHealth]] = []
        self.scheduler: Scheduler | None = None
        self.limit = 0

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now

    async def wait(self, delay: float, wake: asyncio.Event | None) -> None:
        assert self.scheduler is not None
        self.snapshots.append({h.job: h for h in self.scheduler.health()})
        self.waits.append((delay, wake is not None))
        self.now += delay
        if len(self.waits) >= self.limit:
            raise _StopError


def _outcomes(*steps: Exception | None) -> Callable[[], BatchReport]:
    """A ``process_pending`` that raises or succeeds in turn (then succeeds for good)."""
    queue = list(steps)

    def run() -> BatchReport:
        step = queue.pop(0) if queue else None
        if step is not None:
            raise step
        return BatchReport()

    return run


def _fake_node(**overrides: Any) -> Any:
    @contextmanager
    def processor_lock() -> Iterator[None]:
        yield

    config = Config(
        node=NodeSection(name="fake"),
        pipeline=PipelineConfig(interval_seconds=2.0),
        health=HealthConfig(stale_after_intervals=10.0, stale_min_seconds=30.0),
    )
    fields: dict[str, Any] = {
        "config": config,
        "processor_lock": processor_lock,
        "process_pending": lambda: BatchReport(),
        "index_catalog": lambda: 0,
        "close_expired_proposals": lambda: [],
        "purge_expired": lambda: PurgeReport(security_events=0, idempotency_keys=0),
        "revise_releases": lambda wait: None,
        "federation": SimpleNamespace(gossip_round=lambda: []),
    }
    fields.update(overrides)
    return SimpleNamespace(**fields)


def _drive(node: Any, loop: str, waits: int) -> FakeClock:
    fake = FakeClock()
    fake.limit = waits
    scheduler = Scheduler(node, clock=fake.clock, wall=fake.wall, wait=fake.wait)
    fake.scheduler = scheduler
    scheduler.track()
    with pytest.raises(_StopError):
        asyncio.run(getattr(scheduler, loop)())
    return fake


def test_backoff_doubles_from_twice_the_interval_and_is_bounded() -> None:
    assert [backoff(2.0, n) for n in range(1, 8)] == [4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert backoff(2.0, 10_000) == 60.0  # no overflow, still bounded
    assert backoff(3600.0, 3) == 3600.0  # a slow job is never retried less often than it runs
    assert backoff(2.0, 0) == 2.0


def test_scheduler_pipeline_non_node_error_loop_continues_backs_off_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    boom = RuntimeError("corrupt row\nINFO coop.scheduler: forged line")
    node = _fake_node(process_pending=_outcomes(*[boom] * 7, None, None, StorageError("disk full")))
    with caplog.at_level(logging.ERROR, logger="coop.scheduler"):
        fake = _drive(node, "_run", waits=10)
    # Seven failures: bounded exponential back-off (no poke shortens it); then quiet waits a poke
    # ends; then one more failure starts again from the bottom.
    assert fake.waits == [
        (4.0, False),
        (8.0, False),
        (16.0, False),
        (32.0, False),
        (60.0, False),
        (60.0, False),
        (60.0, False),
        (2.0, True),
        (2.0, True),
        (4.0, False),
    ]
    pipeline = [snap[Job.PIPELINE] for snap in fake.snapshots]
    assert [p.consecutive_failures for p in pipeline] == [1, 2, 3, 4, 5, 6, 7, 0, 0, 1]
    assert pipeline[-1].failures == 8
    assert pipeline[0].last_success is None
    assert pipeline[6].stale  # 180 s without a success: over max(10 x 2 s, 30 s)
    assert not pipeline[7].stale and pipeline[7].age_seconds == 0.0  # a success resets it
    assert pipeline[7].last_success == int(1_700_000_000.0 + 1000.0 + 240.0)
    assert pipeline[9].age_seconds == 2.0 and not pipeline[9].stale
    # The other jobs of the loop went on succeeding.
    assert all(snap[Job.CATALOG].consecutive_failures == 0 for snap in fake.snapshots)
    # Logged with the traceback, the exception's newline escaped: no forged line.
    records = [r for r in caplog.records if "pipeline run failed" in r.getMessage()]
    assert len(records) == 8
    assert "corrupt row\\x0aINFO coop.scheduler: forged line" in records[0].getMessage()
    assert records[0].exc_info is not None  # the traceback, for the formatter
    records[0].exc_text = None  # caplog's own formatter cached its rendering: render it as `coop serve` does
    written = EscapingFormatter(FORMAT).format(records[0]).splitlines()
    assert "Traceback (most recent call last):" in written[1]
    assert all(line.startswith("    ") for line in written[1:]), written  # only the first at the margin
    assert "disk full" in records[-1].getMessage() and records[-1].exc_info is None


def test_scheduler_gossip_failure_backs_off_then_resumes_its_interval() -> None:
    rounds = iter([RuntimeError("peer sent junk"), KeyError("x"), None, None])

    def gossip_round() -> list[object]:
        step = next(rounds)
        if step is not None:
            raise step
        return []

    node = _fake_node(federation=SimpleNamespace(gossip_round=gossip_round))
    fake = _drive(node, "_gossip_loop", waits=4)
    assert [delay for delay, _ in fake.waits] == [10.0, 20.0, 5.0, 5.0]
    assert fake.snapshots[-1][Job.GOSSIP].failures == 2
    assert fake.snapshots[-1][Job.GOSSIP].consecutive_failures == 0


def test_scheduler_revision_lock_wait_is_not_a_failure() -> None:
    calls = iter([BusyError("a release cut"), ValueError("bad release"), None])

    def revise_releases(wait: float) -> None:
        step = next(calls)
        if step is not None:
            raise step

    fake = _drive(_fake_node(revise_releases=revise_releases), "_revision_loop", waits=3)
    assert fake.waits == [(5.0, True), (10.0, False), (5.0, True)]
    assert [s[Job.REVISIONS].failures for s in fake.snapshots] == [0, 1, 1]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = make_node(tmp_path)
    try:
        yield n
    finally:
        n.close()


def test_healthz_stale_job_answers_503_naming_it(node: Node) -> None:
    now = [0.0]
    scheduler = Scheduler(node, clock=lambda: now[0])
    scheduler.track()  # the clocks start; the loops themselves are not run here
    with TestClient(create_app(node, background=False, scheduler=scheduler)) as client:
        fresh = client.get("/healthz")
        assert fresh.status_code == 200, fresh.text
        body = fresh.json()
        assert body["status"] == "ok" and body["stale"] == []
        # The review check runs only on a node whose git channel is in review mode (not this one).
        assert set(body["jobs"]) == {j.value for j in Job} - {Job.REVIEWS.value}
        assert body["jobs"]["pipeline"]["age_seconds"] == 0.0
        now[0] = 121.0  # past the default threshold max(10 intervals, 120 s) of the 2 s pipeline
        stale = client.get("/healthz")
        assert stale.status_code == 503, stale.text
        body = stale.json()
        assert body["status"] == "stale"
        assert "pipeline" in body["stale"] and "gossip" in body["stale"]
        assert "retention" not in body["stale"]  # hourly: stale only after ten hours
        metrics = client.get("/metrics").text
        assert 'coop_job_stale{job="pipeline"} 1' in metrics
        assert 'coop_job_stale{job="retention"} 0' in metrics
        assert 'coop_job_last_success_age_seconds{job="gossip"} 121.0' in metrics
        assert 'coop_job_failures_total{job="pipeline"} 0' in metrics


def test_healthz_without_background_jobs_reports_none(node: Node) -> None:
    with TestClient(create_app(node, background=False)) as client:
        response = client.get("/healthz")
        metrics = client.get("/metrics").text
    assert response.status_code == 200
    assert response.json()["jobs"] == {}
    assert "coop_job_" not in metrics


def test_healthz_reviews_job_failing_past_its_threshold_stays_200_advisory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The git target's outage is faked: ``refresh_reviews`` raises the ChannelError git gives
    for an unreachable remote (no network is touched).  The clock is fake too."""
    root = tmp_path / "review-node"
    data = DataDir.create(root, name="Review Co-op")
    config = load_config(data.config_path)
    channels = msgspec.structs.replace(
        config.channels, git=str(tmp_path / "gone.git"), git_mode="review", review_check_s=5.0
    )
    write_config(data.config_path, msgspec.structs.replace(config, channels=channels))
    node = Node(root)

    def unreachable(channel: str = "git") -> list[object]:
        raise ChannelError("git fetch failed: fatal: could not read from remote repository", field="target")

    monkeypatch.setattr(node, "refresh_reviews", unreachable)
    try:
        now = [0.0]
        scheduler = Scheduler(node, clock=lambda: now[0])
        scheduler.track()
        now[0] = 500.0  # far past the reviews job's threshold max(10 x 5 s, 120 s)

        async def runs() -> None:
            await scheduler._attempt(Job.REVIEWS, lambda: node.refresh_reviews("git"))
            for job in Job:  # every other job just succeeded
                if job is not Job.REVIEWS:
                    await scheduler._attempt(job, lambda: None)

        asyncio.run(runs())
        with TestClient(create_app(node, background=False, scheduler=scheduler)) as client:
            response = client.get("/healthz")
            metrics = client.get("/metrics").text
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "ok" and body["stale"] == []
        reviews = body["jobs"]["reviews"]
        assert reviews["stale"] is True and reviews["advisory"] is True
        assert reviews["consecutive_failures"] == 1 and reviews["last_success"] is None
        assert body["jobs"]["pipeline"]["advisory"] is False
        assert 'coop_job_stale{job="reviews"} 1' in metrics
        assert 'coop_job_consecutive_failures{job="reviews"} 1' in metrics
    finally:
        node.close()
