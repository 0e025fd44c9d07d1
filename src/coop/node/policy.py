"""The node's side of the disclosure policy: its rows and settings as the policy's inputs.

The rules live in :mod:`coop.governance.disclosure` (pure); every exit of the
node builds :class:`RecordFacts` and :class:`CollectiveState` here and asks it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec

from coop.governance import (
    Attribution,
    AttributionMode,
    CollectiveState,
    Embargo,
    EvalConsent,
    License,
    Record,
    RecordFacts,
    RecordState,
    Scope,
    Settings,
)
from coop.governance.settings import ascii_fold

if TYPE_CHECKING:
    from coop.federation.gossip import Head

__all__ = [
    "HEAD_COLUMNS",
    "OWN_FACTS",
    "embargo_sql",
    "facts_from_record",
    "head_from_row",
    "mirror_facts",
    "origin_states",
    "own_facts",
    "own_row_facts",
    "own_state",
    "record_choices",
    "record_uid",
    "roster_scopes",
]


def own_state(settings: Settings, *, federation: frozenset[str] | None = None) -> CollectiveState:
    """This co-op's collective state: its switches, and the co-ops its federation scope reaches."""
    return CollectiveState(
        embargo=settings.embargo, quality_freeze=settings.quality_freeze, federation=federation
    )


def facts_from_record(
    record: Record, *, state: RecordState, admitted: bool, origin: str | None = None
) -> RecordFacts:
    """RecordFacts from a decoded record and its standing."""
    return RecordFacts(
        uid=record.uid,
        scope=record.scope,
        license=record.license,
        ai_use=record.ai_use,
        eval=record.eval,
        attribution=record.attribution.mode,
        state=state,
        admitted=admitted,
        tags=record.tags,
        language=record.language,
        origin=origin,
    )


def embargo_sql(embargo: Embargo, *, language: str, tags: str) -> tuple[str, tuple[object, ...]]:
    """The embargo as an SQL condition (`` AND NOT (...)``) over the given column expressions.

    Pages and cuts filter in SQL for speed; this is :meth:`Embargo.covers` written for SQLite
    (``lower()`` folds ASCII only, as :func:`coop.governance.settings.ascii_fold` does), and a
    property test holds the two equal on random rows.
    """
    if not embargo.on:
        return "", ()
    if embargo.whole:
        return " AND 0", ()
    parts: list[str] = []
    params: list[object] = []
    spoken = f"lower(coalesce({language}, ''))"
    for embargoed in embargo.languages:
        folded = ascii_fold(embargoed)
        parts.append(f"({spoken} = ? OR substr({spoken}, 1, ?) = ?)")
        params += [folded, len(folded) + 1, folded + "-"]
    if embargo.tags:
        held = sorted({ascii_fold(tag) for tag in embargo.tags})
        parts.append(
            f"EXISTS (SELECT 1 FROM json_each({tags}) WHERE lower(value) IN ({', '.join('?' * len(held))}))"
        )
        params += held
    return f" AND NOT ({' OR '.join(parts)})", tuple(params)


# -- records and origins as the policy reads them ------------------------------------------------
# Own records (their rows and bytes), mirrored records (their origin's listing and their bytes), and
# each origin's collective state (its latest verified manifest's): shared by the release cut, the
# eval answers and the peering book, so every exit decides from the same facts.

_TAGS: Final = msgspec.json.Decoder(list[str])
_EMBARGO: Final = msgspec.json.Decoder(Embargo)
_FEDERATION: Final = msgspec.json.Decoder(tuple[str, ...])

# The columns own_row_facts reads, from ``contributions c``.
OWN_FACTS: Final = "c.uid, c.scope, c.license, c.ai_use, c.eval, c.state, c.admitted_in, c.tags, c.language"

# The columns head_from_row reads, from ``fed_origins``.
HEAD_COLUMNS: Final = (
    "origin, seq, hash, key, forked, embargo_whole, coop, embargo, quality_freeze, federation, roster"
)


def head_from_row(row: Sequence[Any]) -> Head:
    """An origin's chain head from its ``fed_origins`` row (:data:`HEAD_COLUMNS`)."""
    # coop.federation loads httpx (its transport): imported when first needed, not with the policy.
    from coop.federation.gossip import Head

    return Head(
        seq=row[1],
        hash=row[2],
        key=row[3],
        forked=bool(row[4]),
        embargo_whole=bool(row[5]),
        coop=row[6],
        # NULL: a row from before the column, not yet read again from its head manifest.
        embargo=_EMBARGO.decode(row[7]) if row[7] is not None else Embargo(on=bool(row[5])),
        quality_freeze=bool(row[8]),
        federation=None if row[9] is None else _FEDERATION.decode(row[9]),
        roster=row[10] if len(row) > 10 else None,
    )


def origin_states(conn: sqlite3.Connection) -> dict[str, CollectiveState]:
    """Each origin's collective state, as its latest verified manifest declares it."""
    from coop.federation.gossip import collective_state

    rows = conn.execute(f"SELECT {HEAD_COLUMNS} FROM fed_origins").fetchall()
    scopes = roster_scopes(conn)
    return {row[0]: collective_state(head_from_row(row), scopes) for row in rows}


def roster_scopes(conn: sqlite3.Connection, *, now: int | None = None) -> dict[str, frozenset[str]]:
    """Federation id -> member ids of the newest roster version this node trusts ({} without one):
    whom a manifest naming that roster reaches.  An expired roster is frozen: it reaches no one
    (as the book's own trust: :class:`coop.federation.roster_gossip.RosterBook`)."""
    from coop.federation.roster import frozen, open_roster

    row = conn.execute("SELECT envelope FROM roster_versions ORDER BY version DESC LIMIT 1").fetchone()
    if row is None:
        return {}
    roster = open_roster(bytes(row[0])).roster
    if frozen(roster, now=int(time.time()) if now is None else now):
        return {}
    return {roster.federation: frozenset(roster.ids())}


class _Choices(msgspec.Struct):
    """What the disclosure policy reads from a record's bytes (the rest is skipped)."""

    attribution: Attribution
    tags: tuple[str, ...] = ()
    language: str | None = None


_CHOICES: Final = msgspec.json.Decoder(_Choices)


def record_choices(data: bytes) -> tuple[AttributionMode, tuple[str, ...], str | None] | None:
    """A record's attribution mode, tags and language, read from its canonical bytes
    (None when the bytes are not a record: nothing is disclosed of them)."""
    try:
        choices = _CHOICES.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return choices.attribution.mode, choices.tags, choices.language


class _Described(msgspec.Struct):
    """What a record's bytes say of themselves, for the policy (the rest is skipped)."""

    uid: str
    license: License
    ai_use: str
    eval: EvalConsent
    scope: Scope
    attribution: Attribution
    tags: tuple[str, ...] = ()
    language: str | None = None


_DESCRIBED: Final = msgspec.json.Decoder(_Described)


def record_uid(data: bytes) -> str | None:
    """The uid a record's bytes carry (None when the bytes are not a record)."""
    try:
        return _DESCRIBED.decode(data).uid
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def mirror_facts(origin: str, row: Sequence[Any], data: bytes) -> RecordFacts | None:
    """A mirrored record as the policy sees it: listed by its origin (so a cut there admitted
    it), live until a tombstone deletes it.

    Its terms are the record's own, read from its bytes, never the row's (uid, license, ai_use,
    eval, scope): a row the bytes disagree with (a peer's relabelling, kept before receipt
    checked it) is nothing the policy discloses (None).
    """
    try:
        own = _DESCRIBED.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if (own.uid, own.license.value, own.ai_use, own.eval.value, own.scope.value) != tuple(row[:5]):
        return None
    return RecordFacts(
        uid=own.uid,
        license=own.license,
        ai_use=own.ai_use,
        eval=own.eval,
        scope=own.scope,
        attribution=own.attribution.mode,
        state=RecordState.ACCEPTED,
        admitted=True,
        tags=own.tags,
        language=own.language,
        origin=origin,
    )


def own_facts(row: Sequence[Any], data: bytes) -> RecordFacts | None:
    """One of this node's records as the policy sees it, from its :data:`OWN_FACTS` columns and
    its bytes (for the attribution); None when the bytes are not a record."""
    choices = record_choices(data)
    return None if choices is None else own_row_facts(row, attribution=choices[0])


def own_row_facts(
    row: Sequence[Any], *, attribution: AttributionMode = AttributionMode.ANONYMOUS
) -> RecordFacts:
    """One of this node's records from its :data:`OWN_FACTS` columns alone.

    Without the record's bytes the attribution is taken at its strictest (anonymous): right
    wherever the answer does not depend on it (admission never does).
    """
    return RecordFacts(
        uid=row[0],
        scope=Scope(row[1]),
        license=License(row[2]),
        ai_use=row[3],
        eval=EvalConsent(row[4]),
        attribution=attribution,
        state=RecordState(row[5]),
        admitted=row[6] is not None,
        tags=tuple(_TAGS.decode(row[7])),
        language=row[8],
    )
