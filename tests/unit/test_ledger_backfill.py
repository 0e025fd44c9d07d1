"""Migration 25 fills the channel ledger of an old data directory from its publications.

The data directory is an upgrade fixture made by an older commit (tests/fixtures/datadirs,
schema 15: release v1, a withdrawal, release v2).  The fixtures predate publishing, so the
publications (and a later settings version gating a licence) are written into it here, before
the migration runs: no channel is contacted.  The backfill must give exactly the rows that
carrying those publications again, in order, through ``channel_records.carry`` gives.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tarfile
from pathlib import Path

from coop.node.releases.channel_records import carry
from coop.node.storage.migrations import MIGRATIONS, migrate

FIXTURE = Path(__file__).parents[1] / "fixtures" / "datadirs" / "schema-15-db45fe5.tar.gz"
LEDGER = "SELECT * FROM channel_records ORDER BY channel, seq"


def _unpack(into: Path) -> Path:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(into, filter="data")
    return into / "node" / "coop.sqlite3"


def _up_to(conn: sqlite3.Connection, last: int) -> None:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    for number in range(version + 1, last + 1):
        for statement in (part.strip() for part in MIGRATIONS[number - 1].split(";")):
            if statement:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")


def _with_publications(conn: sqlite3.Connection) -> int:
    """Publications around the fixture's withdrawal; returns the withdrawal's time."""
    (gone,) = conn.execute("SELECT withdrawn_at FROM contributions WHERE state = 'withdrawn'").fetchone()
    (settings_version, body) = conn.execute(
        "SELECT version, CAST(body AS TEXT) FROM settings ORDER BY version DESC LIMIT 1"
    ).fetchone()
    gating = json.loads(body)
    gating["access"] = {"gated": ["CC-BY-4.0"]}
    conn.execute(
        "INSERT INTO settings (version, at, actor, via, body, digest) VALUES (?, ?, 'ada', 'test', ?, 'x')",
        (settings_version + 1, gone + 8, json.dumps(gating).encode()),
    )
    publications = [
        ("git", "v1", gone - 16),
        ("site", "v1", gone - 8),
        ("git", "v1-r2", gone + 2),
        ("git", "v2", gone + 9),
        ("hf", "v2", gone + 10),  # after the gating: its CC-BY-4.0 records stayed home
    ]
    for channel, release, at in publications:
        conn.execute(
            "INSERT INTO publications (channel, target, release, ref, records, at) VALUES (?, 't', ?, 'r', 0, ?)",
            (channel, release, at),
        )
    return int(gone)


def _gated_at(conn: sqlite3.Connection, at: int) -> list[str]:
    (body,) = conn.execute(
        "SELECT CAST(body AS TEXT) FROM settings WHERE at <= ? ORDER BY version DESC LIMIT 1", (at,)
    ).fetchone()
    gated: list[str] = json.loads(body).get("access", {}).get("gated", [])
    return gated


def _tick_at(conn: sqlite3.Connection, at: int) -> int:
    """Old publications kept no tick (``publications.cleared_tick``), so the backfill goes by
    time: carried again, each one is cleared of the withdrawals made before it, by their ticks."""
    (tick,) = conn.execute(
        "SELECT coalesce(max(left_tick), 0) FROM contributions WHERE withdrawn_at < ?", (at,)
    ).fetchone()
    return int(tick)


def test_ledger_backfill_equals_carrying_the_old_publications_again(tmp_path: Path) -> None:
    migrated = _unpack(tmp_path / "a")
    conn = sqlite3.connect(migrated, isolation_level=None)
    try:
        _up_to(conn, 24)
        gone = _with_publications(conn)
    finally:
        conn.close()
    carried = tmp_path / "carried.sqlite3"
    shutil.copy(migrated, carried)

    conn = sqlite3.connect(migrated, isolation_level=None)
    try:
        migrate(conn)
        backfilled = conn.execute(LEDGER).fetchall()
        states = conn.execute("SELECT DISTINCT state, settled_at = at FROM publications").fetchall()
    finally:
        conn.close()

    conn = sqlite3.connect(carried, isolation_level=None)
    try:
        migrate(conn)
        conn.execute("DELETE FROM channel_records")
        for channel, release, at in conn.execute(
            "SELECT channel, release, at FROM publications ORDER BY id"
        ).fetchall():
            version = int(release[1:].split("-")[0])
            carry(
                conn,
                channel=channel,
                version=version,
                at=at,
                live=True,
                gated=_gated_at(conn, at),
                cleared=_tick_at(conn, at),
            )
        again = conn.execute(LEDGER).fetchall()
        (withdrawn_seq,) = conn.execute("SELECT seq FROM contributions WHERE state = 'withdrawn'").fetchone()
        public = {
            seq
            for (seq,) in conn.execute(
                "SELECT seq FROM contributions WHERE released_in IS NOT NULL AND scope = 'public'"
            )
        }
        cc_by = {
            seq
            for (seq,) in conn.execute(
                "SELECT seq FROM contributions WHERE released_in IS NOT NULL AND license = 'CC-BY-4.0'"
            )
        }
    finally:
        conn.close()

    assert backfilled == again
    assert states == [("merged", 1)]
    rows = {(r[0], r[1]): r for r in backfilled}
    # Columns: channel, seq, route, version, state, opened_at, published_at, withdrawn_at, retracted_at, ref.
    assert rows[("git", withdrawn_seq)][4:9] == ("tombstoned", gone - 16, gone - 16, gone, gone + 2)
    assert rows[("site", withdrawn_seq)][4:9] == ("tombstoned", gone - 8, gone - 8, gone, None)
    assert ("hf", withdrawn_seq) not in rows  # withdrawn before the Hub got anything
    assert cc_by and all(("git", seq) in rows and ("hf", seq) not in rows for seq in cc_by)
    assert {seq for channel, seq in rows if channel == "hf"} == public - cc_by - {withdrawn_seq}
