"""What this node refused from peers (requests and manifests), and clock offsets measured.

Each refusal goes to the log, to the security log (``security_events``, purged
with the other security data) and to ``peer_refusals``, which keeps the last
:data:`PER_PEER` per pinned peer and :data:`KEPT` in all (requests signed by
unknown keys included, so a stranger cannot grow the table; those go first, so
they cannot push a peer's history out either).  A request is a peer's only once
its signature verified: one that did not is kept under no peer, with the key id
it claimed.  A pinned peer's latest refusal also becomes its ``last_error`` in
``coop peers list``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import msgspec

from coop.node.logs import escape_controls

if TYPE_CHECKING:
    from coop.federation.gossip import RecordRefusal

__all__ = [
    "KEPT",
    "PER_PEER",
    "SKEW_SHOWN",
    "Refusal",
    "keep_refusals",
    "manifest_refusals",
    "recent_refusals",
    "record_refusal",
    "record_refusals",
    "skew_text",
]

log = logging.getLogger("coop.federation")

PER_PEER: Final = 20
SKEW_SHOWN: Final = 10  # seconds of clock offset worth showing (a Date header has 1 s resolution)
KEPT: Final = 1_000
_DETAIL: Final = 300
STRANGER_QUIET: Final = 60  # seconds: one security-log line per (address, reason) of a non-peer
_QUIET_KEYS: Final = 10_000


class _Quiet:
    """When a stranger's refusal was last written to the security log and the log (bounded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: OrderedDict[tuple[str | None, str], int] = OrderedDict()

    def speak(self, key: tuple[str | None, str], now: int) -> bool:
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < STRANGER_QUIET:
                return False
            self._last[key] = now
            self._last.move_to_end(key)
            while len(self._last) > _QUIET_KEYS:
                self._last.popitem(last=False)
            return True


_quiet = _Quiet()


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """One refused request or manifest: when, from whom, at which step, why."""

    at: int
    step: str
    reason: str
    detail: str
    node_id: str | None = None  # the pinned peer, when the key is one
    keyid: str | None = None  # the key the request claimed (well-formed ids only)


def skew_text(seconds: int) -> str:
    """How a measured offset is shown: ``clock skew ≈ +240 s`` (this node's clock minus the peer's)."""
    return f"clock skew \u2248 {seconds:+d} s"


def record_refusal(
    conn: sqlite3.Connection, refusal: Refusal, *, ip: str | None = None, user_agent: str | None = None
) -> None:
    """Keep one refusal (in the caller's transaction), trimming the table to its bounds."""
    detail = refusal.detail[:_DETAIL]
    conn.execute(
        "INSERT INTO peer_refusals (at, node_id, keyid, step, reason, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (refusal.at, refusal.node_id, refusal.keyid, refusal.step, refusal.reason, detail),
    )
    # A pinned peer's every refusal is kept; anyone else's unsigned or unknown-key requests
    # (which cost nothing to send) at most once a minute per address and reason, so a
    # stranger cannot grow the security log or flood the log.
    speak = refusal.node_id is not None or _quiet.speak((ip, refusal.reason), refusal.at)
    if speak:
        agent = None if user_agent is None else escape_controls(user_agent[:256])
        conn.execute(
            "INSERT INTO security_events (at, ip, user_agent, member_id, action) VALUES (?, ?, ?, NULL, ?)",
            (refusal.at, ip, agent, f"peer.refused:{refusal.reason}"),
        )
    if refusal.node_id is not None:
        conn.execute(
            "UPDATE peers SET last_error = ? WHERE node_id = ?",
            (f"refused its {refusal.step}: {detail}"[:_DETAIL], refusal.node_id),
        )
        conn.execute(
            "DELETE FROM peer_refusals WHERE node_id = ? AND id NOT IN"
            " (SELECT id FROM peer_refusals WHERE node_id = ? ORDER BY id DESC LIMIT ?)",
            (refusal.node_id, refusal.node_id, PER_PEER),
        )
    # Over KEPT in all, the oldest rows of no peer go first: requests that never verified
    # (anyone can send them) must not push a pinned peer's history out.
    conn.execute(
        "DELETE FROM peer_refusals WHERE id IN (SELECT id FROM peer_refusals"
        " ORDER BY node_id IS NOT NULL, id LIMIT max(0, (SELECT count(*) FROM peer_refusals) - ?))",
        (KEPT,),
    )
    if not speak:
        return
    # %r: a peer's words, quoted, never a forged line of our log.
    log.warning(
        "refused %s from %s (%s): %r",
        refusal.step,
        refusal.node_id or refusal.keyid or ip or "an unknown client",
        refusal.reason,
        detail,
    )


def recent_refusals(
    conn: sqlite3.Connection, node_id: str | None = None, *, limit: int = PER_PEER
) -> list[Refusal]:
    """The latest refusals, newest first (of one peer, or of every request)."""
    where, args = ("WHERE node_id = ?", (node_id,)) if node_id is not None else ("", ())
    rows = conn.execute(
        f"SELECT at, step, reason, detail, node_id, keyid FROM peer_refusals {where} ORDER BY id DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [Refusal(at=r[0], step=r[1], reason=r[2], detail=r[3], node_id=r[4], keyid=r[5]) for r in rows]


# Refusals of a relayed manifest that say nothing about the peer that relayed it.
RELAYED_NOT_BLAMED: Final = frozenset({"unknown_key"})


def manifest_refusals(
    reasons: Sequence[str], *, at: int, step: str, node_id: str | None, keyid: str | None
) -> list[Refusal]:
    """Manifests a peer pushed or served that this node's book refused: one refusal per reason.

    A manifest signed by a key this node does not know is another co-op's, relayed: the peer
    that passed it on did nothing wrong, so that refusal is booked under no peer.
    """
    counts: dict[str, int] = {}
    for reason in reasons:
        counts[reason] = counts.get(reason, 0) + 1
    return [
        Refusal(
            at=at,
            step=step,
            reason=reason,
            detail=f"{n} manifest{'s' if n > 1 else ''} refused: {reason}",
            node_id=None if reason in RELAYED_NOT_BLAMED else node_id,
            keyid=None if reason in RELAYED_NOT_BLAMED else keyid,
        )
        for reason, n in sorted(counts.items())
    ]


def record_refusals(refused: Sequence[RecordRefusal], *, at: int, node_id: str) -> list[Refusal]:
    """Record bytes a peer served that this node would not keep, one refusal each (a few per
    exchange: the book does not ask for a refused entry again)."""
    return [
        Refusal(
            at=at,
            step="records",
            reason=item.reason,
            detail=f"record {item.uid!r} ({item.hash[:12]}) listed by {item.origin[:12]}: {item.detail}",
            # The very bytes listed, under a wrong entry: the origin's listing is at fault, not the
            # peer that served them.
            node_id=item.origin if item.served_as_listed else node_id,
        )
        for item in refused
    ]


def keep_refusals(
    conn: sqlite3.Connection,
    refusals: Sequence[Refusal],
    *,
    ip: str | None = None,
    user_agent: str | None = None,
) -> None:
    """Keep several refusals in one transaction (see :func:`record_refusal`)."""
    for refusal in refusals:
        record_refusal(conn, refusal, ip=ip, user_agent=user_agent)
