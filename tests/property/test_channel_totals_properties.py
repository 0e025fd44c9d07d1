"""The channel ledger's running totals (migration 27) against one scan of its rows.

Random histories of one node drive the ledger only through ``channel_records``' own API
(carry, settle, posted, retracted, withdrawn) on an in-memory database, on two publish channels
and three intake routes; no channel is contacted (the publications are only the ledger calls).
Clocks are coarse and may run backwards (a withdrawal's clock lags), and the report's ``now``
and window starts are random, before, inside or after the history, midnight or not.  Part of
each history is written before migration 27 (its backfill counts it), the rest after (its
triggers do); a few rows are deleted outright.  :func:`ledger_totals` must equal
:func:`ledger_totals_scan` field by field.
"""

from __future__ import annotations

import sqlite3

from hypothesis import example, given, settings
from hypothesis import strategies as st

from coop.node.releases import channel_records as ledger
from coop.node.releases.channel_metrics import ledger_totals, ledger_totals_scan
from coop.node.storage.migrations import MIGRATIONS, _statements, migrate
from coop.node.storage.store import current_tick, next_tick

CHANNELS = ("git", "hf")
ROUTES = ("web", "api", "openwebui")
LICENCES = ("CC0-1.0", "CC-BY-4.0")
T0 = 1_790_000_000  # a history starts here; times step by up to a day, withdrawals lag

_OPS = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 2), st.integers(0, 1), st.booleans()),
    st.tuples(st.just("cut")),
    st.tuples(st.just("push"), st.integers(0, 1)),
    st.tuples(st.just("open"), st.integers(0, 1)),
    st.tuples(st.just("merge"), st.integers(0, 1)),
    st.tuples(st.just("close"), st.integers(0, 1)),
    st.tuples(st.just("post"), st.lists(st.integers(0, 30), max_size=3)),
    st.tuples(st.just("unpost"), st.lists(st.integers(0, 30), max_size=3)),
    st.tuples(st.just("withdraw"), st.integers(0, 30), st.integers(0, 90_000)),
    st.tuples(st.just("delete"), st.integers(0, 1), st.integers(0, 30)),
)


def _schema(conn: sqlite3.Connection, version: int) -> None:
    """Migrate to ``version`` only (the backfill of 27 then runs over what was written before it)."""
    for sql in MIGRATIONS[:version]:
        for statement in _statements(sql):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")


class History:
    """One node's ledger driven through the channel_records API (times go mostly forwards)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn, self.seqs, self.version, self.t = conn, 0, 0, T0

    def pick(self, n: int) -> int | None:
        return n % self.seqs + 1 if self.seqs else None

    def run(self, op: tuple[object, ...], step: int) -> None:
        conn, kind = self.conn, op[0]
        self.t += (step * 7919) % 40_000  # coarse, sometimes crossing midnight
        if kind == "add":
            self.seqs += 1
            _, route, licence, public = op
            conn.execute(
                "INSERT INTO contributions (seq, uid, member_id, state, channel, created_at, updated_at,"
                " label, license, ai_use, scope, eval, tags)"
                " VALUES (?, ?, 1, 'accepted', ?, ?, ?, 'good', ?, '', ?, 'y', '[]')",
                (
                    self.seqs,
                    f"u{self.seqs}",
                    ROUTES[int(route)],  # type: ignore[call-overload]
                    self.t,
                    self.t,
                    LICENCES[int(licence)],  # type: ignore[call-overload]
                    "public" if public else "node",
                ),
            )
        elif kind == "cut":
            self.version += 1
            conn.execute(
                "UPDATE contributions SET state = 'released', released_in = ?"
                " WHERE released_in IS NULL AND scope = 'public' AND withdrawn_at IS NULL",
                (self.version,),
            )
        elif kind == "withdraw":
            seq = self.pick(int(op[1]))  # type: ignore[call-overload]
            if seq is None:
                return
            at = self.t - int(op[2])  # type: ignore[call-overload]
            conn.execute(
                "UPDATE contributions SET state = 'withdrawn', withdrawn_at = coalesce(withdrawn_at, ?),"
                " left_tick = coalesce(left_tick, ?) WHERE seq = ?",
                (at, next_tick(conn), seq),
            )
            ledger.withdrawn(conn, seq=seq, at=at)
        elif kind == "post":
            posts = [(s, f"at://p/{s}") for n in op[1] if (s := self.pick(n)) is not None]  # type: ignore[attr-defined]
            ledger.posted(conn, channel="bluesky", posts=posts, version=self.version, at=self.t)
        elif kind == "unpost":
            seqs = [s for n in op[1] if (s := self.pick(n)) is not None]  # type: ignore[attr-defined]
            ledger.retracted(conn, channel="bluesky", seqs=seqs, at=self.t)
        elif kind == "delete":
            seq = self.pick(int(op[2]))  # type: ignore[call-overload]
            conn.execute(
                "DELETE FROM channel_records WHERE channel = ? AND seq = ?",
                (CHANNELS[int(op[1])], seq),  # type: ignore[call-overload]
            )
        elif self.version:
            channel = CHANNELS[int(op[1])]  # type: ignore[call-overload]
            if kind in ("push", "open"):
                live = kind == "push"
                conn.execute(
                    "INSERT INTO publications (channel, target, release, ref, records, at, state,"
                    " settled_at, cleared_tick) VALUES (?, 't', ?, 'r', 0, ?, ?, ?, ?)",
                    (
                        channel,
                        f"v{self.version}",
                        self.t,
                        "merged" if live else "open",
                        self.t if live else None,
                        current_tick(conn),
                    ),
                )
                ledger.carry(
                    conn,
                    channel=channel,
                    version=self.version,
                    at=self.t,
                    live=live,
                    gated={"CC-BY-4.0"},
                )
            else:
                ledger.settle(
                    conn,
                    channel=channel,
                    version=self.version,
                    state="merged" if kind == "merge" else "closed",
                    at=self.t,
                )


@settings(deadline=None, max_examples=200)
@given(
    before=st.lists(_OPS, max_size=25),
    after=st.lists(_OPS, max_size=25),
    now=st.integers(T0 - 86_400, T0 + 60 * 86_400),
    since=st.lists(st.integers(T0 - 86_400, T0 + 60 * 86_400), max_size=4),
    midnight=st.booleans(),
)
# Pushed before migration 27 (backfilled), withdrawn, pushed again (retracted) and deleted after.
@example(
    before=[("add", 0, 0, True), ("add", 1, 0, True), ("cut",), ("push", 0)],
    after=[("withdraw", 0, 0), ("push", 0), ("post", [1]), ("delete", 0, 1), ("delete", 0, 0)],
    now=T0 + 86_400,
    since=[T0 + 3_600],
    midnight=False,
)
# Published after the report's now, and withdrawn after it: exposure only up to now.
@example(
    before=[],
    after=[("add", 2, 0, True), ("add", 0, 0, True), ("cut",), ("open", 1), ("merge", 1), ("withdraw", 0, 0)],
    now=T0,
    since=[T0, T0 - 86_400],
    midnight=True,
)
def test_channel_totals_equal_the_scan_of_the_ledger(
    before: list[tuple[object, ...]],
    after: list[tuple[object, ...]],
    now: int,
    since: list[int],
    midnight: bool,
) -> None:
    if midnight:  # what metrics.collect asks: windows that start at midnight UTC
        since = [s - s % 86_400 for s in since]
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        _schema(conn, 26)
        history = History(conn)
        for step, op in enumerate(before):
            history.run(op, step)
        migrate(conn)
        for step, op in enumerate(after, len(before)):
            history.run(op, step)
        assert ledger_totals(conn, now=now, since=since) == ledger_totals_scan(conn, now=now, since=since)
    finally:
        conn.close()
