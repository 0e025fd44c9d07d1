"""The background work of a serving node: the pipeline, the public catalogue and the retention purge.

The scheduler holds the processor lock for the life of the server (so a
``coop process`` run alongside is refused, not interleaved), processes the
waiting room whenever it is poked or every ``pipeline.interval_seconds``,
and purges expired security data once an hour.

Apart from the pipeline (and not held up by its lock), it revises the served
releases after withdrawals: at start (a revision a crash interrupted is done
again), when poked (the withdrawal's handler pokes it right after its commit)
and every few seconds (tombstones that peers' manifests brought).

When the git channel is in review mode it also looks, every
``channels.review_check_s``, whether the releases offered for review were
merged or closed (:mod:`coop.node.channels.review`).  That job is advisory: it
talks to a third party's repository, whose outage is no fault of this node, so
it shows (stale or not) in ``/healthz``'s body and ``/metrics`` but never makes
``/healthz`` fail.

No exception ends a loop: a failed run is logged (with its traceback, control
characters escaped), retried after a bounded exponential back-off, and counted.
Each job's last success is kept so that ``/healthz`` and ``/metrics`` show its
age, and ``/healthz`` fails when one is stale (``health.*`` settings), an advisory one aside.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Final, TypeVar

import msgspec

from coop.node.errors import BusyError, NodeError
from coop.node.logs import escape_controls

if TYPE_CHECKING:
    from coop.node.runtime import Node

__all__ = ["Job", "JobHealth", "Scheduler", "backoff"]

log = logging.getLogger("coop.scheduler")

_PURGE_EVERY: Final = 3600.0
_LOCK_RETRY: Final = 1.0
_REVISE_EVERY: Final = 5.0
_BACKOFF_MAX: Final = 60.0  # a failing job is retried at least this often (or once per interval)

T = TypeVar("T")


class Job(enum.StrEnum):
    """The scheduler's periodic jobs (gossip includes issuing this node's own manifest)."""

    PIPELINE = "pipeline"
    CATALOG = "catalog"
    PROPOSALS = "proposals"
    RETENTION = "retention"
    GOSSIP = "gossip"
    REVISIONS = "revisions"
    REVIEWS = "reviews"  # only on a node whose git channel is in review mode


# Jobs that talk to a third party (the git target's maintainers' server): their failure is
# shown but never makes /healthz fail, since restarting this node would not mend the remote.
_ADVISORY: Final = frozenset({Job.REVIEWS})


class JobHealth(msgspec.Struct, frozen=True):
    """One periodic job as ``/healthz`` and ``/metrics`` show it."""

    job: Job
    interval_seconds: float
    age_seconds: float  # since its last success (since the server started, before the first)
    last_success: int | None  # Unix time of the last success; None: none yet
    failures: int  # failed runs since the server started
    consecutive_failures: int  # 0 when the last run succeeded
    stale_after_seconds: float
    stale: bool
    # Shown, never failing /healthz: the job depends on a third party (the reviews job).
    advisory: bool = False


def backoff(interval: float, failures: int) -> float:
    """The wait before retrying a job after ``failures`` failures in a row: doubling from twice
    its interval, never more than a minute (or its interval, for a job slower than that)."""
    if failures <= 0:
        return interval
    cap = max(interval, _BACKOFF_MAX)
    return min(interval * 2.0 ** min(failures, 32), cap)


class _JobState:
    def __init__(self, job: Job, interval: float, *, started: float, advisory: bool = False) -> None:
        self.job = job
        self.interval = interval
        self.advisory = advisory
        self.started = started
        self.last_success: float | None = None  # on the scheduler's (monotonic) clock
        self.last_success_wall: int | None = None
        self.failures = 0
        self.consecutive = 0
        self.next_due = started

    def succeeded(self, now: float, wall: float) -> None:
        self.last_success = now
        self.last_success_wall = int(wall)
        self.consecutive = 0
        self.next_due = now + self.interval

    def failed(self, now: float) -> float:
        self.failures += 1
        self.consecutive += 1
        delay = backoff(self.interval, self.consecutive)
        self.next_due = now + delay
        return delay

    def health(self, now: float, *, intervals: float, floor: float) -> JobHealth:
        age = max(0.0, now - (self.started if self.last_success is None else self.last_success))
        threshold = max(self.interval * intervals, floor)
        return JobHealth(
            job=self.job,
            interval_seconds=self.interval,
            age_seconds=round(age, 3),
            last_success=self.last_success_wall,
            failures=self.failures,
            consecutive_failures=self.consecutive,
            stale_after_seconds=threshold,
            stale=age > threshold,
            advisory=self.advisory,
        )


async def _wait(delay: float, wake: asyncio.Event | None) -> None:
    """Sleep ``delay`` seconds, or less if ``wake`` is set meanwhile."""
    if wake is None:
        await asyncio.sleep(delay)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), timeout=delay)


class Scheduler:
    """The node's background loops; ``clock``, ``wall`` and ``wait`` are injected for tests."""

    def __init__(
        self,
        node: Node,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        wait: Callable[[float, asyncio.Event | None], Awaitable[None]] = _wait,
    ) -> None:
        self.node = node
        self._clock = clock
        self._wall = wall
        self._pause = wait
        self._wake = asyncio.Event()
        self._revise = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._gossip: asyncio.Task[None] | None = None
        self._revisions: asyncio.Task[None] | None = None
        self._reviews: asyncio.Task[None] | None = None
        self._stack = ExitStack()
        self._jobs: dict[Job, _JobState] = {}

    def poke(self) -> None:
        """Ask for a pipeline run soon (after new contributions), and a look at pending revisions."""
        self._wake.set()
        self._revise.set()

    def wake(self) -> None:
        """Ask for a pipeline run soon, and nothing else: a new contribution leaves no revision
        pending (under load the intake calls this thousands of times a second)."""
        self._wake.set()

    def start(self) -> None:
        self.track()
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="coop-scheduler")
        self._gossip = loop.create_task(self._gossip_loop(), name="coop-gossip")
        self._revisions = loop.create_task(self._revision_loop(), name="coop-revisions")
        if Job.REVIEWS in self._jobs:
            self._reviews = loop.create_task(self._review_loop(), name="coop-reviews")

    def track(self) -> None:
        """Start the jobs' clocks (``start`` does it; a test driving one loop calls it alone)."""
        now = self._clock()
        pipeline = self.node.config.pipeline.interval_seconds
        intervals = {
            Job.PIPELINE: pipeline,
            Job.CATALOG: pipeline,
            Job.PROPOSALS: pipeline,
            Job.RETENTION: _PURGE_EVERY,
            Job.GOSSIP: self.node.config.federation.interval_seconds,
            Job.REVISIONS: _REVISE_EVERY,
        }
        channels = self.node.config.channels
        if channels.git_mode == "review" and channels.git:
            # Tracked only where there are reviews to check.
            intervals[Job.REVIEWS] = channels.review_check_s
        self._jobs = {
            job: _JobState(job, every, started=now, advisory=job in _ADVISORY)
            for job, every in intervals.items()
        }

    def health(self) -> list[JobHealth]:
        """Every job's age since its last success; empty when the loops are not running."""
        cfg = self.node.config.health
        now = self._clock()
        return [
            state.health(now, intervals=cfg.stale_after_intervals, floor=cfg.stale_min_seconds)
            for state in self._jobs.values()
        ]

    async def stop(self) -> None:
        for task in (self._task, self._gossip, self._revisions, self._reviews):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._gossip = self._revisions = self._reviews = None
        self._stack.close()

    async def _attempt(self, job: Job, work: Callable[[], T], *, may_wait: bool = False) -> T | None:
        """Run one job in a worker thread; a failure is logged and counted, never raised.

        Returns its result, or None when it failed (the job's back-off is then set).  With
        ``may_wait``, a BusyError (a lock another task holds for a while) is neither.
        """
        state = self._jobs[job]
        try:
            result = await asyncio.to_thread(work)
        except Exception as exc:  # one bad run must not end the loop: logged with its traceback below
            if may_wait and isinstance(exc, BusyError):
                log.info("%s waits: %s", job, escape_controls(exc.message))
                return None
            delay = state.failed(self._clock())
            if isinstance(exc, NodeError):
                log.error(
                    "%s run failed (%d in a row; next try in %.0f s): %s",
                    job,
                    state.consecutive,
                    delay,
                    escape_controls(exc.message),
                )
            else:
                # The traceback goes to the formatter (coop.node.logs indents and escapes it).
                log.error(
                    "%s run failed (%d in a row; next try in %.0f s): %s",
                    job,
                    state.consecutive,
                    delay,
                    escape_controls(f"{type(exc).__name__}: {exc}"),
                    exc_info=exc,
                )
            return None
        state.succeeded(self._clock(), self._wall())
        return result

    def _backing_off(self, *jobs: Job) -> float:
        """How long the loop of these jobs waits for the longest back-off among them (0: none)."""
        now = self._clock()
        waits = [self._jobs[j].next_due - now for j in jobs if self._jobs[j].consecutive]
        return max([0.0, *waits])

    async def _gossip_loop(self) -> None:
        """A round of gossip every ``federation.interval_seconds`` (and a manifest when something changed)."""
        interval = self.node.config.federation.interval_seconds
        while True:
            reports = await self._attempt(Job.GOSSIP, self.node.federation.gossip_round)
            for report in reports or ():
                moved = report.pulled.accepted + report.pushed.accepted + report.records
                if moved:
                    log.info(
                        "gossip with %s: %d manifests in, %d out, %d records",
                        report.peer,
                        report.pulled.accepted,
                        report.pushed.accepted,
                        report.records,
                    )
            await self._pause(self._backing_off(Job.GOSSIP) or interval, None)

    async def _revision_loop(self) -> None:
        """Withdrawn records out of the served releases, soon after the withdrawal's commit.

        The pending state is the database's (tombstones not yet revised), so this
        loop only decides when; a cut in progress (the release lock) just delays it.
        """
        while True:
            self._revise.clear()
            await self._attempt(
                Job.REVISIONS, lambda: self.node.revise_releases(wait=_LOCK_RETRY), may_wait=True
            )
            delay = self._backing_off(Job.REVISIONS)
            if delay:
                await self._pause(delay, None)
            else:
                await self._pause(_REVISE_EVERY, self._revise)

    async def _review_loop(self) -> None:
        """Whether the releases offered for review on the git target were merged or closed,
        every ``channels.review_check_s`` (a merge makes them live: their records count)."""
        interval = self.node.config.channels.review_check_s
        while True:
            # A coop publish holding the clone (BusyError) just delays the check.
            settled = await self._attempt(
                Job.REVIEWS, lambda: self.node.refresh_reviews("git"), may_wait=True
            )
            for item in settled or ():
                log.info("review of %s on git: %s", item.release, item.state)
            await self._pause(self._backing_off(Job.REVIEWS) or interval, None)

    async def _acquire(self) -> None:
        while True:
            try:
                self._stack.enter_context(self.node.processor_lock())
                return
            except BusyError as exc:
                log.warning("waiting for the pipeline lock: %s", escape_controls(exc.message))
                await self._pause(_LOCK_RETRY, None)

    async def _run(self) -> None:
        await self._acquire()
        interval = self.node.config.pipeline.interval_seconds
        while True:
            self._wake.clear()
            busy = False
            report = await self._attempt(Job.PIPELINE, self.node.process_pending)
            if report is not None:
                busy = bool(report.accepted or report.quarantined or report.duplicate or report.skipped)
                if report.accepted or report.quarantined or report.duplicate:
                    log.info(
                        "processed: %d accepted, %d quarantined, %d duplicates",
                        report.accepted,
                        report.quarantined,
                        report.duplicate,
                    )
            indexed = await self._attempt(Job.CATALOG, self.node.index_catalog)
            busy = busy or bool(indexed)
            closed = await self._attempt(Job.PROPOSALS, self.node.close_expired_proposals)
            if closed:
                log.info("proposals closed at the end of their voting time: %s", closed)
            if self._clock() >= self._jobs[Job.RETENTION].next_due:
                purged = await self._attempt(Job.RETENTION, self.node.purge_expired)
                if purged is not None and (purged.security_events or purged.idempotency_keys):
                    log.info(
                        "retention: purged %d security events, %d idempotency keys",
                        purged.security_events,
                        purged.idempotency_keys,
                    )
            delay = self._backing_off(Job.PIPELINE, Job.CATALOG, Job.PROPOSALS)
            if delay:
                # Failing: wait out the back-off; a poke does not shorten it.
                await self._pause(delay, None)
            elif busy:
                # Intake is flowing: run once per interval, in larger batches.
                await self._pause(interval, None)
            else:
                # Quiet: the next contribution's poke starts a run at once.
                await self._pause(interval, self._wake)
