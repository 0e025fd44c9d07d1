"""What the joint actions' pages, API and command line read beside the book: co-op names and votes.

The SQL of :mod:`coop.node.http.joint` (the surfaces hold none): the names other co-ops' own
manifests declare, and this co-op's open proposals that decide a joint action.
"""

from __future__ import annotations

import json
import sqlite3

__all__ = ["open_joint_votes", "origin_names"]

_DECISIONS = {"joint.sign": "sign", "joint.end": "end"}


def origin_names(conn: sqlite3.Connection) -> dict[str, str]:
    """Node id -> the co-op name its latest manifest declares (every origin this node holds)."""
    return {
        str(origin): str(coop)
        for origin, coop in conn.execute("SELECT origin, coop FROM fed_origins")
        if coop
    }


def open_joint_votes(conn: sqlite3.Connection) -> dict[str, tuple[int, str]]:
    """Action id -> (proposal number, ``"sign"`` or ``"end"``) of the oldest open proposal of this
    co-op deciding that action (changes exactly ``{"joint.sign": id}`` or ``{"joint.end": id}``)."""
    votes: dict[str, tuple[int, str]] = {}
    rows = conn.execute(
        "SELECT id, changes FROM proposals WHERE status = 'open'"
        " AND CAST(changes AS TEXT) LIKE '{\"joint.%' ORDER BY id"
    ).fetchall()
    for pid, changes in rows:
        try:
            decoded = json.loads(changes)
        except ValueError:
            continue
        if not isinstance(decoded, dict) or len(decoded) != 1:
            continue
        ((path, value),) = decoded.items()
        if path in _DECISIONS and isinstance(value, str):
            votes.setdefault(value, (int(pid), _DECISIONS[path]))
    return votes
