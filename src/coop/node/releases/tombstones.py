"""Tombstone lists of releases: which withdrawn records each may name, as the disclosure policy says.

A tombstone tells holders of a copy to delete a record, so it names the
record's uid to whoever reads the list.  It may name only records that were in
that audience before (:func:`coop.governance.disclose_tombstone`):

- a public release lists this co-op's withdrawn records that were public and
  that a release cut admitted (``released_in``): never a node- or
  federation-scope record, never one withdrawn before any release held it;
- a federated release lists each ``(origin, uid)`` once, and only records that
  were public there: this co-op's own records as above, and a peer's records
  that one of this node's federated releases held (``fed_tombstones.released_scope``,
  set when a revision removed them from it; see :mod:`coop.node.releases.revision`).
"""

from __future__ import annotations

import sqlite3
from typing import Final

import msgspec

from coop.governance import (
    AttributionMode,
    Audience,
    CollectiveState,
    EvalConsent,
    License,
    RecordFacts,
    RecordState,
    Scope,
    disclose_tombstone,
)

__all__ = [
    "PublicTombstone",
    "federated_tombstones",
    "own_tombstone_facts",
    "peer_tombstone_facts",
    "public_tombstones",
]

# A withdrawal is announced whatever the switches say (holders must delete): no state needed.
_ANY_STATE: Final = CollectiveState()


class PublicTombstone(msgspec.Struct, frozen=True, omit_defaults=True):
    """One line of a public release's ``tombstones.jsonl``."""

    uid: str
    withdrawn_at: int
    reason: str
    replaced_by: str | None = None


def own_tombstone_facts(
    uid: str, *, scope: str, license: str, ai_use: str, eval: str, released_in: int | None
) -> RecordFacts:
    """The policy's view of one of this co-op's withdrawn records (attribution plays no part)."""
    return RecordFacts(
        uid=uid,
        scope=Scope(scope),
        license=License(license),
        ai_use=ai_use,
        eval=EvalConsent(eval),
        attribution=AttributionMode.ANONYMOUS,
        state=RecordState.WITHDRAWN,
        admitted=released_in is not None,
    )


def peer_tombstone_facts(origin: str, uid: str, scope: str = Scope.PUBLIC.value) -> RecordFacts:
    """The policy's view of a peer's withdrawn record that a federated release of this node held."""
    return RecordFacts(
        uid=uid,
        scope=Scope(scope),
        license=License.CC0,  # not stored once withdrawn; plays no part in a tombstone's answer
        ai_use="",
        eval=EvalConsent.NO,
        attribution=AttributionMode.ANONYMOUS,
        state=RecordState.WITHDRAWN,
        admitted=True,
        origin=origin,
    )


_OWN: Final = (
    "SELECT t.uid, t.at, t.reason, t.replaced_by, c.scope, c.license, c.ai_use, c.eval, c.released_in"
    " FROM tombstones t JOIN contributions c ON c.uid = t.uid ORDER BY t.uid"
)


def public_tombstones(conn: sqlite3.Connection) -> list[PublicTombstone]:
    """What a public release of this co-op lists as withdrawn, in uid order."""
    out: list[PublicTombstone] = []
    for uid, at, reason, replaced_by, scope, licence, ai_use, consent, released_in in conn.execute(_OWN):
        facts = own_tombstone_facts(
            uid, scope=scope, license=licence, ai_use=ai_use, eval=consent, released_in=released_in
        )
        if disclose_tombstone(facts, _ANY_STATE, Audience.PUBLIC):
            out.append(PublicTombstone(uid=uid, withdrawn_at=int(at), reason=reason, replaced_by=replaced_by))
    return out


def federated_tombstones(conn: sqlite3.Connection, node_id: str) -> list[tuple[str, str]]:
    """What a federated release lists as withdrawn: ``(origin, uid)`` pairs, each once, sorted."""
    named: set[tuple[str, str]] = set()
    for uid, _, _, _, scope, licence, ai_use, consent, released_in in conn.execute(_OWN):
        facts = own_tombstone_facts(
            uid, scope=scope, license=licence, ai_use=ai_use, eval=consent, released_in=released_in
        )
        if disclose_tombstone(facts, _ANY_STATE, Audience.FEDERATED):
            named.add((node_id, uid))
    for origin, uid, scope in conn.execute(
        "SELECT origin, uid, released_scope FROM fed_tombstones WHERE released_scope IS NOT NULL"
    ):
        if disclose_tombstone(peer_tombstone_facts(origin, uid, scope), _ANY_STATE, Audience.FEDERATED):
            named.add((origin, uid))
    return sorted(named)


def withdrawn_uids(conn: sqlite3.Connection) -> set[str]:
    """Every own record uid withdrawn since the node began (payouts skip them)."""
    return {str(uid) for (uid,) in conn.execute("SELECT uid FROM tombstones")}
