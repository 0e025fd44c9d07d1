"""What the channel ledger says per publish channel and intake route, in one aggregate query (for metrics).

``channel_records`` holds one row per (publish channel k, record); :func:`ledger_totals`
counts its rows grouped by (k, intake route) in a single scan, so the metrics stay cheap
however many records a node holds (a few channels times a few routes come back).  Times
are Unix seconds; ``since`` values are a window's first second, ``now`` the report's time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

import msgspec

from coop.node.releases.channel_records import RecordState

__all__ = ["LIFECYCLE", "WEEK", "LedgerTotals", "ledger_totals", "publication_channels"]

WEEK: Final = 7 * 86_400
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


def ledger_totals(conn: sqlite3.Connection, *, now: int, since: Sequence[int]) -> list[LedgerTotals]:
    """Per (publish channel, intake route): M counts, published, retracted, pending, exposure.

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
