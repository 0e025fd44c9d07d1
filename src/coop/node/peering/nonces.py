"""Nonces of accepted peer requests, kept in the node's database (``peer_nonces``).

A captured signed request stays refused after a restart: the nonce outlives the
process for as long as its signature could still be accepted.  The table is
bounded: expired rows are purged as requests come, and past ``max_size`` the
rows nearest to expiry go first (as the in-memory cache did).
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Final

from coop.node.storage.store import Store

__all__ = ["SqliteReplayCache"]

_PURGE_EVERY: Final = 256


class SqliteReplayCache:
    """A :class:`~coop.federation.httpsig.ReplayCache` over the ``peer_nonces`` table."""

    def __init__(self, store: Store, *, max_size: int = 100_000, purge_every: int = _PURGE_EVERY) -> None:
        self.store = store
        self.max_size = max_size
        self.purge_every = purge_every
        self._calls = 0
        self._lock = threading.Lock()

    def seen(self, nonce: str, *, expires: int, now: int) -> bool:
        """Record a nonce; True if it was already there and has not expired (a replay)."""
        with self._lock:
            purge = self._calls % self.purge_every == 0
            self._calls += 1

        def write(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM peer_nonces WHERE nonce = ? AND expires < ?", (nonce, now))
            fresh = conn.execute(
                "INSERT INTO peer_nonces (nonce, expires) VALUES (?, ?) ON CONFLICT (nonce) DO NOTHING",
                (nonce, expires),
            ).rowcount
            if purge:
                _purge(conn, now=now, max_size=self.max_size)
            return fresh == 0

        return self.store.write(write)


def _purge(conn: sqlite3.Connection, *, now: int, max_size: int) -> None:
    conn.execute("DELETE FROM peer_nonces WHERE expires < ?", (now,))
    (count,) = conn.execute("SELECT count(*) FROM peer_nonces").fetchone()
    if count > max_size:
        conn.execute(
            "DELETE FROM peer_nonces WHERE nonce IN (SELECT nonce FROM peer_nonces ORDER BY expires LIMIT ?)",
            (count - max_size,),
        )
