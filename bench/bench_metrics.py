"""What a /metrics scrape costs on a big channel ledger: running totals (migration 27) vs the scan.

A node with ``--records`` released records (three intake routes) carried to four publish
channels (git, hf, site, bluesky): ``4 x records`` ``channel_records`` rows over 90 days, ~3%
withdrawn (most of those retracted since), ~2% of git's still open in a review.  The ledger is
built directly in SQLite (one INSERT ... SELECT per channel, through migration 27's triggers:
that time is reported, beside the same insert with the triggers dropped).  Then, in the same
run, the median of ``--repeat`` calls of

- ``ledger_totals`` (the running totals) and ``ledger_totals_scan`` (one scan of every row);
- ``coop.node.metrics.collect`` with each (the scan patched in for the second), which also
  counts the contributions' stages as before.

    .venv/bin/python bench/bench_metrics.py [--records 100000] [--repeat 5] [--no-record]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from coop.node import metrics
from coop.node.releases import channel_metrics
from coop.node.storage.migrations import migrate
from results import append_section, code_version, command, machine, markdown_table

DAY = 86_400
NOW = 1_790_000_000
START = NOW - 90 * DAY
CHANNELS = ("git", "hf", "site", "bluesky")


def build(path: Path, records: int, *, triggers: bool) -> float:
    """The ledger in a fresh database at ``path``; returns the seconds the channel rows took."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        migrate(conn)
        if not triggers:
            for name in ("insert", "update", "delete"):
                conn.execute(f"DROP TRIGGER channel_totals_{name}")
        conn.execute("BEGIN")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO contributions (seq, uid, member_id, state, channel, created_at, updated_at, label,"
            " license, ai_use, scope, eval, tags, released_in, withdrawn_at)"
            " SELECT i, 'u' || i, 1, CASE WHEN i % 33 = 0 THEN 'withdrawn' ELSE 'released' END,"
            " CASE i % 3 WHEN 0 THEN 'web' WHEN 1 THEN 'api' ELSE 'openwebui' END,"
            " ? + i * ?, ? + i * ?, 'good', 'CC0-1.0', '', 'public', 'y', '[]', 1 + i / 1000,"
            " CASE WHEN i % 33 = 0 THEN ? + i * ? + 5 * ? END FROM n",
            (
                records,
                START,
                80 * DAY // records,
                START,
                80 * DAY // records,
                START,
                80 * DAY // records,
                DAY,
            ),
        )
        conn.execute("COMMIT")
        started = time.perf_counter()
        conn.execute("BEGIN")
        for k, channel in enumerate(CHANNELS):
            # published k hours after intake; withdrawn ones retracted a day later, but every 4th
            conn.execute(
                "INSERT INTO channel_records (channel, seq, route, version, state, opened_at,"
                " published_at, withdrawn_at, retracted_at, ref)"
                " SELECT ?, seq, channel, released_in,"
                " CASE WHEN withdrawn_at IS NOT NULL THEN 'tombstoned'"
                "  WHEN ? AND seq % 50 = 0 THEN 'open' ELSE 'merged' END,"
                " created_at + ?, CASE WHEN ? AND seq % 50 = 0 THEN NULL ELSE created_at + ? END,"
                " withdrawn_at, CASE WHEN withdrawn_at IS NOT NULL AND seq % 4 <> 0 THEN withdrawn_at + ? END,"
                " CASE WHEN ? THEN 'at://p/' || seq END FROM contributions",
                (channel, k == 0, k * 3600, k == 0, k * 3600, DAY, channel == "bluesky"),
            )
        conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()


def median(call: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(path: Path, repeat: int) -> list[list[str]]:
    conn = sqlite3.connect(path, isolation_level=None)
    since = [NOW - NOW % DAY - span + DAY for span in metrics.WINDOWS.values()]
    totals = channel_metrics.ledger_totals
    scan = channel_metrics.ledger_totals_scan
    try:
        assert totals(conn, now=NOW, since=since) == scan(conn, now=NOW, since=since)
        fast = median(lambda: totals(conn, now=NOW, since=since), repeat)
        slow = median(lambda: scan(conn, now=NOW, since=since), repeat)
        report = metrics.collect(conn, now=NOW)
        fast_collect = median(lambda: metrics.collect(conn, now=NOW), repeat)
        channel_metrics.ledger_totals = scan  # collect reads it from here
        try:
            assert metrics.collect(conn, now=NOW) == report
            slow_collect = median(lambda: metrics.collect(conn, now=NOW), repeat)
        finally:
            channel_metrics.ledger_totals = totals
    finally:
        conn.close()
    return [
        ["ledger_totals", f"{slow * 1e3:.1f}", f"{fast * 1e3:.2f}", f"{slow / fast:.0f}x"],
        [
            "metrics.collect",
            f"{slow_collect * 1e3:.1f}",
            f"{fast_collect * 1e3:.2f}",
            f"{slow_collect / fast_collect:.1f}x",
        ],
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    code = code_version()
    rows = 4 * args.records
    with tempfile.TemporaryDirectory() as tmp:
        bare = build(Path(tmp) / "bare.sqlite3", args.records, triggers=False)
        kept = build(Path(tmp) / "totals.sqlite3", args.records, triggers=True)
        reads = markdown_table(
            ["call", "scan (ms)", "running totals (ms)", "ratio"],
            measure(Path(tmp) / "totals.sqlite3", args.repeat),
        )
    writes = markdown_table(
        ["insert of the ledger rows", "without triggers (s)", "with triggers (s)", "ratio", "us/row added"],
        [
            [
                f"{rows:,} rows",
                f"{bare:.2f}",
                f"{kept:.2f}",
                f"{kept / bare:.1f}x",
                f"{(kept - bare) / rows * 1e6:.1f}",
            ]
        ],
    )
    notes = [
        f"- {args.records:,} records x {len(CHANNELS)} publish channels = {rows:,} channel_records rows,"
        f" 3 intake routes, 90 days; median of {args.repeat} calls each, same run, file database (WAL, warm cache)",
        "- the scan is `ledger_totals_scan` (the code before migration 27), patched into `collect` for its row;"
        " both reports checked equal first",
    ]
    print(reads, writes, *notes, sep="\n\n")
    if not args.no_record:
        section = [
            f"- command: `{command(__file__)}`",
            f"- machine: {machine()}",
            f"- code at start: {code}",
            *notes,
            "",
            reads,
            "",
            writes,
        ]
        print(f"\nappended to {append_section('Channel ledger metrics: running totals vs scan', section)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
