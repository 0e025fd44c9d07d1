"""A data directory from before migration 19 opens with its missing-record index filled and
its bucket roots worked out from the entries it holds; later changes keep both right."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from coop.federation.gossip import Effects, Entry, Tombstone
from coop.federation.manifest import bucket_roots
from coop.federation.simulation import record_for
from coop.governance import EvalConsent, License, Scope
from coop.node.peering.books import SqliteBookStore
from coop.node.storage.migrations import MIGRATIONS
from coop.node.storage.store import Store

ORIGIN = "a" * 64


def entry(uid: str, licence: License = License.CC0, scope: Scope = Scope.PUBLIC) -> Entry:
    made, _ = record_for(
        Entry(uid=uid, hash="0" * 64, license=licence, ai_use="train-ai=y", eval=EvalConsent.YES, scope=scope)
    )
    return made


def at_schema_18(path: Path, entries: list[Entry], held: list[Entry], tombstoned: list[str]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for number, sql in enumerate(MIGRATIONS[:18], 1):
        for statement in (part.strip() for part in sql.split(";")):
            if statement:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
    conn.execute(
        "INSERT INTO fed_origins (origin, coop, seq, hash, key, updated_at) VALUES (?, 'c', 1, ?, ?, 0)",
        (ORIGIN, "1" * 64, ORIGIN),
    )
    for e in entries:
        conn.execute(
            "INSERT INTO fed_entries (origin, uid, hash, license, ai_use, eval, scope, tags, language)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, '[]', NULL)",
            (ORIGIN, e.uid, e.hash, e.license.value, e.ai_use, e.eval.value, e.scope.value),
        )
    for e in held:
        conn.execute(
            "INSERT INTO mirror_records (hash, origin, uid, license, ai_use, eval, scope, record, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
            (e.hash, ORIGIN, e.uid, e.license.value, e.ai_use, e.eval.value, e.scope.value, record_for(e)[1]),
        )
    for uid in tombstoned:
        conn.execute("INSERT INTO fed_tombstones (origin, uid) VALUES (?, ?)", (ORIGIN, uid))
    conn.close()


def test_an_upgraded_data_directory_indexes_what_it_holds(tmp_path: Path) -> None:
    wanted, held, node_only, gone = entry("u1"), entry("u2"), entry("u3", scope=Scope.NODE), entry("u4")
    later = entry("u5", License.CC_BY)
    listed = [wanted, held, node_only, gone]
    at_schema_18(tmp_path / "node.db", listed, held=[held], tombstoned=["u4"])
    store = Store(tmp_path / "node.db", synchronous="off")
    try:
        books = SqliteBookStore(store)
        assert books.missing(ORIGIN) == [wanted]
        assert books.roots_after(ORIGIN, (), ()) == bucket_roots({e.uid: e for e in listed})
        kept = store.read(lambda c: c.execute("SELECT count(*) FROM fed_buckets").fetchone()[0])
        assert kept == 1  # the roots worked out at first use are kept for the next start
        change = ((later,), (Tombstone(uid="u1", at=0),))
        expected = bucket_roots({e.uid: e for e in [held, node_only, gone, later]})
        assert books.roots_after(ORIGIN, *change) == expected
        books.apply(Effects(origin=ORIGIN, store=(), added=change[0], tombstones=change[1]))
        assert books.missing(ORIGIN) == [later]
        # A second store over the same file (a restart) starts from the kept roots and agrees.
        assert SqliteBookStore(store).roots_after(ORIGIN, (), ()) == expected
    finally:
        store.close()
