"""The node's SQLite store: one writer (group commit), per-thread readers, typed results.

Write operations are plain functions of a connection, run by the
:class:`~coop.node.storage.writer.Writer`; reads use a per-thread read-only
connection.  Nothing here returns a cursor.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from coop.node.errors import StorageError
from coop.node.storage.migrations import migrate
from coop.node.storage.writer import Writer, connect

__all__ = ["Store", "current_tick", "next_tick", "schema_version"]

T = TypeVar("T")


class Store:
    """Connections to one node database."""

    def __init__(self, path: Path, *, synchronous: str = "full") -> None:
        self.path = path
        setup = connect(path, synchronous=synchronous)
        try:
            migrate(setup)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot prepare database {path}: {exc}") from exc
        finally:
            setup.close()
        self.writer = Writer(path, synchronous=synchronous)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def reader(self) -> sqlite3.Connection:
        """This thread's read connection (sees every committed write), closed by :meth:`close`."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            with self._lock:
                # After close, a thread's first read would open a connection nobody closes.
                if self._closed:
                    raise StorageError("the store is closed")
                conn = connect(self.path, readonly=True)
                self._readers.append(conn)
            self._local.conn = conn
        return conn

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self.reader())
        except sqlite3.Error as exc:
            raise StorageError(f"database read failed: {exc}") from exc

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self.writer.call(_translating(fn))

    async def awrite(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.writer.run(_translating(fn))

    def close(self) -> None:
        # Readers first: the writer, closing last, checkpoints the WAL into the database.
        with self._lock:
            self._closed = True
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        self.writer.close()


def _translating(fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    def run(conn: sqlite3.Connection) -> T:
        try:
            return fn(conn)
        except sqlite3.IntegrityError as exc:
            raise StorageError(f"constraint failed: {exc}") from exc

    return run


def next_tick(conn: sqlite3.Connection) -> int:
    """A database-wide counter of changes to what a release may contain."""
    (n,) = conn.execute("UPDATE ticks SET n = n + 1 WHERE id = 1 RETURNING n").fetchone()
    return int(n)


def current_tick(conn: sqlite3.Connection) -> int:
    """Where :func:`next_tick`'s counter stands: every change committed before this read has a
    tick at most this, every later one a greater tick (ticks are taken in write transactions)."""
    (n,) = conn.execute("SELECT n FROM ticks WHERE id = 1").fetchone()
    return int(n)


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version the database is at (its migrations applied)."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    return int(version)
