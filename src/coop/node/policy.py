"""The node's side of the disclosure policy: its rows and settings as the policy's inputs.

The rules live in :mod:`coop.governance.disclosure` (pure); every exit of the
node builds :class:`RecordFacts` and :class:`CollectiveState` here and asks it.
"""

from __future__ import annotations

from coop.governance import (
    CollectiveState,
    Embargo,
    Record,
    RecordFacts,
    RecordState,
    Settings,
)
from coop.governance.settings import ascii_fold

__all__ = ["embargo_sql", "facts_from_record", "own_state"]


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
