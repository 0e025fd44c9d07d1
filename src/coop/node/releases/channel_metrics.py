"""What the channel ledger says per publish channel and intake route (for metrics), from running totals.

``channel_records`` holds one row per (publish channel k, record).  Migration 27's triggers keep
``channel_totals`` (per k and intake route: rows per state M, published, retracted, pending,
withdrawals of live rows, and the sums that give the exposure) and ``channel_days`` (per day:
first published, retracted, withdrawn while live) in step with every write, so
:func:`ledger_totals` reads a few rows per channel and route however many records a node holds
(issue 16: the scan took ~0.6-1.0 s at 400k rows on every /metrics scrape).
:func:`ledger_totals_scan` is the same report by one scan of ``channel_records``: the reference
the property test and bench/bench_metrics.py hold the totals to.  Times are Unix seconds;
``since`` values are a window's first second, ``now`` the report's time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

import msgspec

from coop.node.releases.channel_records import RecordState

__all__ = ["LIFECYCLE", "WEEK", "LedgerTotals", "ledger_totals", "ledger_totals_scan", "publication_channels"]

WEEK: Final = 7 * 86_400
DAY: Final = 86_400
LIFECYCLE: Final = tuple(state.value for state in RecordState)  # M of a record on a publish channel


class LedgerTotals(msgspec.Struct, frozen=True, kw_only=True):
    """Counts of one (publish channel, intake route); ``*_window`` follow the order of ``since``."""

    channel: str
    route: str
    lifecycle: tuple[int, ...]  # rows in each state of LIFECYCLE
    published: int  # rows with P^k = 1 (published_at set), retracted since or not
    published_window: tuple[int, ...]  # first published at or after each since
    retracted: int  # D^k all time (retracted_at set)
    retracted_window: tuple[int, ...]
    pending: int  # withdrawn and published, not yet retracted
    withdrawals: int  # withdrawals of rows that were live on k when withdrawn
    live_seconds: int  # Σ (min(withdrawn_at, now) - published_at) over published rows, never negative


def publication_channels(conn: sqlite3.Connection) -> list[str]:
    """Publish channels that received a release (some may have no ledger row: nothing public in it)."""
    return [str(channel) for (channel,) in conn.execute("SELECT DISTINCT channel FROM publications")]


def ledger_totals_scan(conn: sqlite3.Connection, *, now: int, since: Sequence[int]) -> list[LedgerTotals]:
    """:func:`ledger_totals` by one scan of every ``channel_records`` row (the reference for tests
    and the bench; O(records)).

    A withdrawal counts towards the hazard only for a row live on k when it came
    (published at or before the withdrawal); its exposure ends at the withdrawal.
    """
    columns = [f"sum(state = '{state}')" for state in LIFECYCLE]  # the enum's values, not input
    columns += [f"sum(published_at >= :s{i})" for i in range(len(since))]
    columns += [f"sum(retracted_at >= :s{i})" for i in range(len(since))]
    params: dict[str, int] = {"now": now} | {f"s{i}": s for i, s in enumerate(since)}
    rows = conn.execute(
        "SELECT channel, route, count(published_at), count(retracted_at),"
        " sum(withdrawn_at IS NOT NULL AND published_at IS NOT NULL AND retracted_at IS NULL),"
        " sum(withdrawn_at >= published_at),"
        " coalesce(sum(max(0, min(coalesce(withdrawn_at, :now), :now) - published_at)), 0), "
        + ", ".join(columns)
        + " FROM channel_records GROUP BY channel, route",
        params,
    )
    states, windows = len(LIFECYCLE), len(since)
    totals: list[LedgerTotals] = []
    for channel, route, published, retracted, pending, withdrawals, live, *counts in rows:
        n = [int(c or 0) for c in counts]
        totals.append(
            LedgerTotals(
                channel=str(channel),
                route=str(route),
                lifecycle=tuple(n[:states]),
                published=int(published),
                published_window=tuple(n[states : states + windows]),
                retracted=int(retracted),
                retracted_window=tuple(n[states + windows :]),
                pending=int(pending or 0),
                withdrawals=int(withdrawals or 0),
                live_seconds=int(live),
            )
        )
    return totals


def _day(t: int) -> int:
    """The day a time falls on, as migration 27 numbers them (floor(t / 86400))."""
    return t // DAY


def ledger_totals(conn: sqlite3.Connection, *, now: int, since: Sequence[int]) -> list[LedgerTotals]:
    """Per (publish channel, intake route): M counts, published, retracted, pending, exposure.

    Read from the running totals, with the same numbers as :func:`ledger_totals_scan`: a
    withdrawal counts towards the hazard only for a row live on k when it came (published at
    or before the withdrawal); its exposure ends at the withdrawal.  The exposure is
    ``now * live - Σ published_at + Σ (withdrawn_at - published_at)``, corrected through the
    indexes for the rows (normally none) published or withdrawn after ``now``; a window whose
    ``since`` is not midnight UTC adds its first partial day from the index by time.
    """
    rows = conn.execute(
        "SELECT channel, route, open, merged, closed, tombstoned, published, retracted, pending,"
        " withdrawals, live, live_since, withdrawn_exposure FROM channel_totals"
        " WHERE open + merged + closed + tombstoned > 0"
    ).fetchall()
    if not rows:
        return []
    channels = sorted({str(row[0]) for row in rows})
    # Per window: the whole days from the first midnight at or after ``since``, then its partial day.
    firsts = [-(-s // DAY) for s in since]
    columns = [f"sum(CASE WHEN day >= {d} THEN published ELSE 0 END)" for d in firsts]
    columns += [f"sum(CASE WHEN day >= {d} THEN retracted ELSE 0 END)" for d in firsts]
    windows: dict[tuple[str, str], list[int]] = {}
    if since:
        for channel, route, *counts in conn.execute(
            f"SELECT channel, route, {', '.join(columns)} FROM channel_days WHERE day >= ?"
            " GROUP BY channel, route",
            (min(firsts),),
        ):
            windows[(str(channel), str(route))] = [int(c or 0) for c in counts]
    n = len(since)
    for i, (s, d) in enumerate(zip(since, firsts, strict=True)):
        if s == d * DAY:
            continue
        for offset, column in ((0, "published_at"), (n, "retracted_at")):
            for channel in channels:  # one index range per channel: (channel, <column>)
                for route, count in conn.execute(
                    f"SELECT route, count(*) FROM channel_records WHERE channel = ?"
                    f" AND {column} >= ? AND {column} < ? GROUP BY route",
                    (channel, s, d * DAY),
                ):
                    windows.setdefault((channel, str(route)), [0] * (2 * n))[offset + i] += int(count)
    # Exposure: rows live after ``now`` count nothing yet; withdrawals after ``now`` only up to it.
    late: dict[tuple[str, str], int] = {}
    for channel in channels:
        for route, extra in conn.execute(
            "SELECT route, sum(published_at - ?) FROM channel_records WHERE channel = ?"
            " AND published_at > ? AND withdrawn_at IS NULL GROUP BY route",
            (now, channel, now),
        ):
            late[(channel, str(route))] = late.get((channel, str(route)), 0) + int(extra)
        for route, extra in conn.execute(
            "SELECT route, sum(max(0, ? - published_at) - (withdrawn_at - published_at)) FROM channel_records"
            " WHERE channel = ? AND withdrawn_at > ? AND withdrawn_at >= published_at GROUP BY route",
            (now, channel, now),
        ):
            late[(channel, str(route))] = late.get((channel, str(route)), 0) + int(extra)
    totals: list[LedgerTotals] = []
    for channel, route, *counts in rows:
        key = (str(channel), str(route))
        c = [int(v) for v in counts]
        lifecycle = dict(zip(("open", "merged", "closed", "tombstoned"), c[:4], strict=True))
        published, retracted, pending, withdrawals, live, live_since, exposure = c[4:]
        window = windows.get(key, [0] * (2 * n))
        totals.append(
            LedgerTotals(
                channel=key[0],
                route=key[1],
                lifecycle=tuple(lifecycle[state] for state in LIFECYCLE),
                published=published,
                published_window=tuple(window[:n]),
                retracted=retracted,
                retracted_window=tuple(window[n:]),
                pending=pending,
                withdrawals=withdrawals,
                live_seconds=now * live - live_since + exposure + late.get(key, 0),
            )
        )
    return totals
