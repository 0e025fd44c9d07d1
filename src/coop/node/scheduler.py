"""The background work of a serving node: the pipeline, the public catalogue and the retention purge.

The scheduler holds the processor lock for the life of the server (so a
``coop process`` run alongside is refused, not interleaved), processes the
waiting room whenever it is poked or every ``pipeline.interval_seconds``,
and purges expired security data once an hour.

Apart from the pipeline (and not held up by its lock), it revises the served
releases after withdrawals: at start (a revision a crash interrupted is done
again), when poked (the withdrawal's handler pokes it right after its commit)
and every few seconds (tombstones that peers' manifests brought).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING, Final

from coop.node.errors import BusyError, NodeError

if TYPE_CHECKING:
    from coop.node.runtime import Node

__all__ = ["Scheduler"]

log = logging.getLogger("coop.scheduler")

_PURGE_EVERY: Final = 3600.0
_LOCK_RETRY: Final = 1.0
_REVISE_EVERY: Final = 5.0


class Scheduler:
    def __init__(self, node: Node) -> None:
        self.node = node
        self._wake = asyncio.Event()
        self._revise = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._gossip: asyncio.Task[None] | None = None
        self._revisions: asyncio.Task[None] | None = None
        self._stack = ExitStack()

    def poke(self) -> None:
        """Ask for a pipeline run soon (after new contributions), and a look at pending revisions."""
        self._wake.set()
        self._revise.set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="coop-scheduler")
        self._gossip = loop.create_task(self._gossip_loop(), name="coop-gossip")
        self._revisions = loop.create_task(self._revision_loop(), name="coop-revisions")

    async def stop(self) -> None:
        for task in (self._task, self._gossip, self._revisions):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._gossip = self._revisions = None
        self._stack.close()

    async def _gossip_loop(self) -> None:
        """A round of gossip every ``federation.interval_seconds`` (and a manifest when something changed)."""
        interval = self.node.config.federation.interval_seconds
        while True:
            try:
                reports = await asyncio.to_thread(self.node.federation.gossip_round)
                for report in reports:
                    moved = report.pulled.accepted + report.pushed.accepted + report.records
                    if moved:
                        log.info(
                            "gossip with %s: %d manifests in, %d out, %d records",
                            report.peer,
                            report.pulled.accepted,
                            report.pushed.accepted,
                            report.records,
                        )
            except NodeError as exc:
                log.error("gossip round failed: %s", exc.message)
            except Exception:  # a peer's bad answer must not stop gossip for good
                log.exception("gossip round failed")
            await asyncio.sleep(interval)

    async def _revision_loop(self) -> None:
        """Withdrawn records out of the served releases, soon after the withdrawal's commit.

        The pending state is the database's (tombstones not yet revised), so this
        loop only decides when; a cut in progress (the release lock) just delays it.
        """
        while True:
            self._revise.clear()
            try:
                await asyncio.to_thread(self.node.revise_releases, wait=_LOCK_RETRY)
            except BusyError as exc:
                log.info("revision waits: %s", exc.message)
            except NodeError as exc:
                log.error("revising releases failed: %s", exc.message)
            except Exception:  # one bad release must not stop revisions for good
                log.exception("revising releases failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._revise.wait(), timeout=_REVISE_EVERY)

    async def _acquire(self) -> None:
        while True:
            try:
                self._stack.enter_context(self.node.processor_lock())
                return
            except BusyError as exc:
                log.warning("waiting for the pipeline lock: %s", exc.message)
                await asyncio.sleep(_LOCK_RETRY)

    async def _run(self) -> None:
        await self._acquire()
        interval = self.node.config.pipeline.interval_seconds
        last_purge: float | None = None
        while True:
            self._wake.clear()
            busy = False
            try:
                report = await asyncio.to_thread(self.node.process_pending)
                busy = bool(report.accepted or report.quarantined or report.duplicate or report.skipped)
                indexed = await asyncio.to_thread(self.node.index_catalog)
                busy = busy or indexed > 0
                closed = await asyncio.to_thread(self.node.close_expired_proposals)
                if closed:
                    log.info("proposals closed at the end of their voting time: %s", closed)
                if report.accepted or report.quarantined or report.duplicate:
                    log.info(
                        "processed: %d accepted, %d quarantined, %d duplicates",
                        report.accepted,
                        report.quarantined,
                        report.duplicate,
                    )
                if last_purge is None or time.monotonic() - last_purge > _PURGE_EVERY:
                    purged = await asyncio.to_thread(self.node.purge_expired)
                    last_purge = time.monotonic()
                    if purged.security_events or purged.idempotency_keys:
                        log.info(
                            "retention: purged %d security events, %d idempotency keys",
                            purged.security_events,
                            purged.idempotency_keys,
                        )
            except NodeError as exc:
                log.error("pipeline run failed: %s", exc.message)
            if busy:
                # Intake is flowing: run once per interval, in larger batches.
                await asyncio.sleep(interval)
            else:
                # Quiet: the next contribution's poke starts a run at once.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=interval)
