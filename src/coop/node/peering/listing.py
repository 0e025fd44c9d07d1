"""This node's own listing (what its next manifest adds and withdraws) and the peering package's
read queries for pages, the API and peers' record pulls (split from :mod:`coop.node.peering.books`,
the book store)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from coop.federation import Entry, Tombstone
from coop.governance import Audience, CollectiveState, JointRules, disclose
from coop.node.peering.books import entry_from_row, placeholders
from coop.node.policy import (
    OWN_FACTS,
    origin_states,
    own_facts,
)

__all__ = [
    "envelope_at",
    "fetch_rows",
    "latest_release",
    "manifest_rows",
    "mark_listed",
    "mirrored_rows",
    "origin_rows",
    "pending",
]


# -- this node's own listing (what its next manifest adds and withdraws) ----------------------


def pending(conn: sqlite3.Connection, state: CollectiveState) -> tuple[list[Entry], list[Tombstone]]:
    """Records to list and tombstones to announce.

    A record is listed once a release cut admitted it and the policy lets it go to the
    co-ops of this federation now (never merely accepted; not during a freeze or under
    an embargo: it waits, unlisted).  Own records go alike to every pinned co-op, so one
    of them stands for all; with none pinned, federation scope has no one to go to yet.
    """
    rows = conn.execute(
        f"SELECT c.uid, c.record_sha256, c.license, c.ai_use, c.eval, c.scope, c.tags, c.language, t.record,"
        f" {OWN_FACTS} FROM contributions c JOIN contents t ON t.seq = c.seq"
        " WHERE c.admitted_in IS NOT NULL AND c.listed_seq IS NULL ORDER BY c.seq"
    ).fetchall()
    member = min(state.federation) if state.federation else None
    added = []
    for row in rows:
        facts = None if row[8] is None else own_facts(row[9:], bytes(row[8]))
        if facts is not None and disclose(facts, state, Audience.PEER, requester=member):
            added.append(entry_from_row(row))
    tombs = conn.execute(
        "SELECT t.uid, t.at FROM tombstones t JOIN contributions c ON c.uid = t.uid"
        " WHERE t.announced_seq IS NULL AND c.listed_seq IS NOT NULL"
    ).fetchall()
    return added, [Tombstone(uid=r[0], at=r[1]) for r in tombs]


def mark_listed(conn: sqlite3.Connection, seq: int, uids: list[str], tombstones: list[str]) -> None:
    """Records and tombstones the manifest ``seq`` carried, so the next one does not again."""
    conn.executemany(
        "UPDATE contributions SET listed_seq = ? WHERE uid = ? AND listed_seq IS NULL",
        [(seq, u) for u in uids],
    )
    conn.executemany("UPDATE tombstones SET announced_seq = ? WHERE uid = ?", [(seq, u) for u in tombstones])


def latest_release(conn: sqlite3.Connection) -> str | None:
    """The name of this node's latest release (``v7``), if it cut one."""
    row = conn.execute("SELECT max(version) FROM releases").fetchone()
    return None if row[0] is None else f"v{row[0]}"


# -- reading for pages and peers -----------------------------------------------------------------


def origin_rows(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """Every origin with its head, the entries it lists and the records mirrored here."""
    rows: list[tuple[Any, ...]] = conn.execute(
        "SELECT o.origin, o.coop, o.seq, o.hash, o.key, o.forked, o.embargo_whole, o.updated_at,"
        " (SELECT count(*) FROM fed_entries e WHERE e.origin = o.origin),"
        " (SELECT count(*) FROM mirror_records m WHERE m.origin = o.origin)"
        " FROM fed_origins o ORDER BY o.coop, o.origin"
    ).fetchall()
    return rows


def manifest_rows(conn: sqlite3.Connection, origin: str) -> list[tuple[Any, ...]]:
    """(seq, hash, in_chain, evidence, received_at) of every manifest kept from ``origin``."""
    rows: list[tuple[Any, ...]] = conn.execute(
        "SELECT seq, hash, in_chain, evidence, received_at FROM fed_manifests WHERE origin = ? ORDER BY seq, hash",
        (origin,),
    ).fetchall()
    return rows


def envelope_at(conn: sqlite3.Connection, origin: str, seq: int) -> bytes | None:
    """The envelope of ``origin``'s manifest ``seq`` (the chain's, where a fork left two)."""
    row = conn.execute(
        "SELECT envelope FROM fed_manifests WHERE origin = ? AND seq = ? ORDER BY in_chain DESC",
        (origin, seq),
    ).fetchone()
    return None if row is None else bytes(row[0])


def mirrored_rows(conn: sqlite3.Connection, origin: str, after: str, limit: int) -> list[tuple[Any, ...]]:
    """(uid, hash, license, ai_use, eval, scope, record) of ``origin`` held here, in uid order."""
    rows: list[tuple[Any, ...]] = conn.execute(
        "SELECT uid, hash, license, ai_use, eval, scope, record FROM mirror_records"
        " WHERE origin = ? AND uid > ? ORDER BY uid LIMIT ?",
        (origin, after, limit),
    ).fetchall()
    return rows


def fetch_rows(
    conn: sqlite3.Connection, chunk: list[str], joint: Mapping[str, JointRules] | None = None
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], dict[str, CollectiveState]]:
    """Own and mirrored rows holding these hashes, and the origins' states (with the joint
    rules binding each, as this node holds them), in one snapshot."""
    marks = placeholders(len(chunk))
    own = conn.execute(
        f"SELECT c.record_sha256, t.record, {OWN_FACTS} FROM contributions c JOIN contents t ON t.seq = c.seq"
        f" WHERE c.record_sha256 IN ({marks})",
        chunk,
    ).fetchall()
    mirrored = conn.execute(
        "SELECT hash, origin, record, uid, license, ai_use, eval, scope FROM mirror_records"
        f" WHERE hash IN ({marks})",
        chunk,
    ).fetchall()
    return own, mirrored, origin_states(conn, joint=joint)
