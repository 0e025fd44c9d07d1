"""One writer thread per process, committing in groups.

Every write is a function of a connection, queued here.  The thread takes
whatever is queued (no waiting for more: a fixed delay costs more than it
saves), runs each job in its own savepoint inside one transaction, commits
once, and only then completes the jobs.  So a caller that awaits its job
knows the change is durable, and one failing job rolls back alone.

Jobs awaited from an event loop are completed with one callback per loop per
group, not one per job: waking the loop once for thirty requests is what
keeps the event loop and this thread from trading the GIL back and forth.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

from coop.node.errors import StorageError

__all__ = ["Writer", "connect", "scrub_after_commit"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_GROUP: Final = 512
_STOP: Final = object()
_BUSY_TIMEOUT_MS: Final = 10_000
_SCRUB_WAIT_MS: Final = 2_000  # how long a truncating checkpoint may wait for readers

# Set by a write job (on the writer's thread) that erased personal data.
_erasures = threading.local()


def scrub_after_commit() -> None:
    """Ask the writer to checkpoint and truncate the WAL once the current group commits.

    With ``secure_delete`` on, erased text is zeroed in the database's pages, but the WAL
    still holds earlier images of those pages until it is checkpointed and truncated.
    Call this from a write job that erased personal data.
    """
    _erasures.pending = True


def connect(path: Path, *, synchronous: str = "full", readonly: bool = False) -> sqlite3.Connection:
    """Open a connection with the node's pragmas; transactions are managed explicitly."""
    try:
        if readonly:
            conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
        else:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open database {path}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        # Deleted content is overwritten with zeros (also in freed pages): erased personal
        # data must not linger in free space, nor in backups that copy every page.
        conn.execute("PRAGMA secure_delete = ON")
        if not readonly:
            # page_size only takes effect on a new database (before WAL is set).
            conn.execute("PRAGMA page_size = 8192")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA cache_size = -16000")
        return conn
    except sqlite3.Error as exc:
        conn.close()  # opened but not usable (not a database, locked): not left to the collector
        raise StorageError(f"cannot open database {path}: {exc}") from exc


class _Gathered:
    """Items of one kind waiting for the same job: the writer takes them all at once."""

    __slots__ = ("fn", "items")

    def __init__(self, fn: Callable[[sqlite3.Connection, list[Any]], list[Any]]) -> None:
        self.fn = fn
        self.items: list[tuple[Any, asyncio.AbstractEventLoop, asyncio.Future[Any]]] = []


class _Job:
    __slots__ = ("fn", "future", "gathered", "loop", "waiter")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        loop: asyncio.AbstractEventLoop | None = None,
        waiter: asyncio.Future[Any] | None = None,
        gathered: _Gathered | None = None,
    ) -> None:
        self.fn = fn
        self.future: Future[Any] | None = None if loop is not None or gathered is not None else Future()
        self.loop = loop
        self.waiter = waiter
        self.gathered = gathered


def _settle_waiters(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """Runs on the event loop: complete every awaited job of one group."""
    for waiter, result, problem in outcomes:
        if waiter.done():  # the caller went away (cancelled); the write stands regardless
            continue
        if problem is None:
            waiter.set_result(result)
        else:
            waiter.set_exception(problem)


class Writer:
    """The single writer of a process: group commit over one connection."""

    def __init__(self, path: Path, *, synchronous: str = "full") -> None:
        self._conn = connect(path, synchronous=synchronous)
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="coop-writer", daemon=True)
        self._closed = False
        self._gathering: dict[str, _Gathered] = {}
        self._gather_lock = threading.Lock()
        self.groups = 0
        self.jobs = 0
        # Run on the writer's connection after each commit, before any job is completed
        # (the node keeps its signed audit head there); a failure is logged, never raised.
        self.after_commit: Callable[[sqlite3.Connection], None] | None = None
        self._thread.start()

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        if self._closed:
            raise StorageError("the writer is closed")
        job = _Job(fn)
        self._queue.put(job)
        assert job.future is not None
        return job.future

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a write and wait for its commit (from a thread)."""
        return self.submit(fn).result()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a write and await its commit (from the event loop)."""
        if self._closed:
            raise StorageError("the writer is closed")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(fn, loop, waiter))
        return await waiter

    async def run_gathered(
        self, kind: str, fn: Callable[[sqlite3.Connection, list[Any]], list[Any]], item: Any
    ) -> Any:
        """Await one item of a kind written many at a time: ``fn(conn, items)`` returns one
        result per item (an exception instance fails that item alone)."""
        if self._closed:
            raise StorageError("the writer is closed")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        with self._gather_lock:
            gathered = self._gathering.get(kind)
            if gathered is None:
                fresh = self._gathering[kind] = _Gathered(fn)
                self._queue.put(_Job(partial(self._take, kind, fresh), gathered=fresh))
                gathered = fresh
            gathered.items.append((item, loop, waiter))
        return await waiter

    def _take(self, kind: str, gathered: _Gathered, conn: sqlite3.Connection) -> _Gathered:
        with self._gather_lock:
            # From here on, new items of this kind start the next job.
            if self._gathering.get(kind) is gathered:
                del self._gathering[kind]
        results = gathered.fn(conn, [item for item, _, _ in gathered.items])
        if len(results) != len(gathered.items):
            raise StorageError(f"{kind}: {len(results)} results for {len(gathered.items)} items")
        gathered.items = [
            (result, loop, waiter) for result, (_, loop, waiter) in zip(results, gathered.items, strict=True)
        ]
        return gathered

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        try:
            # Fold the WAL back into the database so the next open starts clean.
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.warning("checkpoint at close failed: %s", exc)
        self._conn.close()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[_Job] = [first]  # type: ignore[list-item]
            stop = False
            while len(batch) < _MAX_GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            try:
                self._commit(batch)
            except Exception:  # the writer must outlive any one group
                log.exception("writer: a group could not be completed")
            if stop:
                return

    def _commit(self, batch: list[_Job]) -> None:
        conn = self._conn
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT job")
                try:
                    result = job.fn(conn)
                except BaseException as failure:  # noqa: BLE001 - handed to the job's caller
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((job, None, failure))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((job, result, None))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.exception("group commit failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = StorageError(f"database write failed: {exc}")
            self._complete([(job, None, error) for job in batch])
            return
        self.groups += 1
        self.jobs += len(batch)
        if self.after_commit is not None:
            try:
                self.after_commit(conn)
            except Exception:  # the commit stands; the hook's own failure is only logged
                log.exception("writer: the after-commit step failed")
        if getattr(_erasures, "pending", False):
            self._scrub()  # before the jobs complete: an erasure returns once it is scrubbed
        self._complete(outcomes)

    def _scrub(self) -> None:
        """Checkpoint the WAL into the database and truncate it: no old page image is left.

        If a reader holds an old snapshot too long, the request stays pending for the next
        group (and :meth:`close` truncates anyway).
        """
        conn = self._conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {_SCRUB_WAIT_MS}")
            (busy, _, _) = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            log.warning("checkpoint after an erasure failed: %s", exc)
            return
        finally:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        if not busy:
            _erasures.pending = False

    @staticmethod
    def _complete(outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
        by_loop: dict[
            asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]
        ] = {}
        for job, result, problem in outcomes:
            if job.gathered is not None:
                for outcome, loop, waiter in job.gathered.items:
                    if problem is None and isinstance(outcome, BaseException):
                        by_loop.setdefault(loop, []).append((waiter, None, outcome))
                    else:
                        by_loop.setdefault(loop, []).append((waiter, outcome, problem))
                continue
            if job.loop is not None and job.waiter is not None:
                by_loop.setdefault(job.loop, []).append((job.waiter, result, problem))
                continue
            future = job.future
            assert future is not None
            if not future.set_running_or_notify_cancel():
                continue  # cancelled by its caller; nothing to tell
            if problem is None:
                future.set_result(result)
            else:
                future.set_exception(problem)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_waiters, items)
            except RuntimeError:  # the loop has closed: nobody is waiting any more
                log.warning("event loop closed before %d writes could be reported", len(items))
