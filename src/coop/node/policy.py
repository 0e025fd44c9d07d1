"""The node's side of the disclosure policy: its rows and settings as the policy's inputs.

The rules live in :mod:`coop.governance.disclosure` (pure); every exit of the
node builds :class:`RecordFacts` and :class:`CollectiveState` here and asks it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec

from coop.governance import (
    Attribution,
    AttributionMode,
    CollectiveState,
    Defaults,
    Embargo,
    EvalConsent,
    JointRules,
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

NO_JOINT: Final = JointRules()  # no joint action binds the co-op

__all__ = [
    "HEAD_COLUMNS",
    "NO_JOINT",
    "OWN_FACTS",
    "embargo_sql",
    "facts_from_record",
    "gated_sql",
    "head_from_row",
    "intake_defaults",
    "joint_sql",
    "joint_union",
    "mirror_facts",
    "origin_states",
    "own_facts",
    "own_row_facts",
    "own_state",
    "record_choices",
    "record_uid",
    "roster_scopes",
]


def own_state(
    settings: Settings, *, federation: frozenset[str] | None = None, joint: JointRules = NO_JOINT
) -> CollectiveState:
    """This co-op's collective state: its switches, the co-ops its federation scope reaches,
    what the joint actions binding it demand now (``joint``: :meth:`JointKeeper.rules`), and its
    gated licence buckets (``access.gated``; peers mirror them only with ``access.mirror_gated``)."""
    return CollectiveState(
        embargo=settings.embargo,
        quality_freeze=settings.quality_freeze,
        federation=federation,
        joint=joint,
        gated=frozenset(settings.access.gated),
        mirror_gated=settings.access.mirror_gated,
    )


def intake_defaults(settings: Settings, joint: JointRules = NO_JOINT) -> Defaults:
    """What a new contribution gets for the choices its member leaves open: the co-op's defaults,
    the AI-use preference replaced while a joint preference shift binds the co-op."""
    if joint.ai_use is None or joint.ai_use == settings.defaults.ai_use:
        return settings.defaults
    return msgspec.structs.replace(settings.defaults, ai_use=joint.ai_use)


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
        created_at=record.created_at,
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
    parts, params = _selected_sql(embargo.tags, embargo.languages, language=language, tags=tags)
    return f" AND NOT ({' OR '.join(parts)})", tuple(params)


def _selected_sql(
    held_tags: Sequence[str], languages: Sequence[str], *, language: str, tags: str
) -> tuple[list[str], list[object]]:
    """SQL conditions, one per named language and one for the tags, true for a row they select
    (:meth:`Embargo.covers`'s folding: ASCII case, a language covers its regional variants)."""
    parts: list[str] = []
    params: list[object] = []
    spoken = f"lower(coalesce({language}, ''))"
    for embargoed in languages:
        folded = ascii_fold(embargoed)
        parts.append(f"({spoken} = ? OR substr({spoken}, 1, ?) = ?)")
        params += [folded, len(folded) + 1, folded + "-"]
    if held_tags:
        held = sorted({ascii_fold(tag) for tag in held_tags})
        parts.append(
            f"EXISTS (SELECT 1 FROM json_each({tags}) WHERE lower(value) IN ({', '.join('?' * len(held))}))"
        )
        params += held
    return parts, params


def joint_sql(
    rules: JointRules, *, language: str, tags: str, license: str, created_at: str
) -> tuple[str, tuple[object, ...]]:
    """What the joint actions binding the co-op hide of its own pages, as an SQL condition
    (`` AND ...``) over the given column expressions: records a joint embargo selects (by tag,
    language or licence) and, under evaluation-only, records created at or after its start
    (or at an unknown time).  A joint freeze hides nothing here: like the co-op's own quality
    freeze it stops flows and cuts, not the pages.

    This is the own pages' joint gate of :func:`coop.governance.disclose` (public audience,
    not a snapshot) written for SQLite; a property test holds the two equal on random rows.
    """
    sql: list[str] = []
    params: list[object] = []
    selected: list[str] = []
    for selector in rules.embargoes:
        if selector.whole:
            return " AND 0", ()
        parts, part_params = _selected_sql(selector.tags, selector.languages, language=language, tags=tags)
        if selector.licenses:
            named = sorted({licence.value for licence in selector.licenses})
            parts.append(f"{license} IN ({', '.join('?' * len(named))})")
            part_params += named
        selected += parts
        params += part_params
    if selected:
        sql.append(f" AND NOT ({' OR '.join(selected)})")
    if rules.eval_only_since is not None:
        sql.append(f" AND {created_at} IS NOT NULL AND {created_at} < ?")
        params.append(rules.eval_only_since)
    return "".join(sql), tuple(params)


def gated_sql(gated: Collection[str], *, license: str) -> tuple[str, tuple[object, ...]]:
    """The gated licence buckets as an SQL condition (`` AND ...``) over the given column
    expression: a public page shows no record of a gated bucket (only grantees download them).

    This is the public audiences' gate of :func:`coop.governance.disclose`
    (``record.license.value in state.gated``) written for SQLite; a property test holds the two
    equal on random rows.
    """
    if not gated:
        return "", ()
    shut = sorted(gated)
    return f" AND {license} NOT IN ({', '.join('?' * len(shut))})", tuple(shut)


# -- records and origins as the policy reads them ------------------------------------------------
# Own records (their rows and bytes), mirrored records (their origin's listing and their bytes), and
# each origin's collective state (its latest verified manifest's): shared by the release cut, the
# eval answers and the peering book, so every exit decides from the same facts.

_TAGS: Final = msgspec.json.Decoder(list[str])
_EMBARGO: Final = msgspec.json.Decoder(Embargo)
_FEDERATION: Final = msgspec.json.Decoder(tuple[str, ...])
_JOINT: Final = msgspec.json.Decoder(JointRules)

# The columns own_row_facts reads, from ``contributions c``.
OWN_FACTS: Final = (
    "c.uid, c.scope, c.license, c.ai_use, c.eval, c.state, c.admitted_in, c.tags, c.language, c.created_at"
)

# The columns head_from_row reads, from ``fed_origins``.
HEAD_COLUMNS: Final = (
    "origin, seq, hash, key, forked, embargo_whole, coop, embargo, quality_freeze, federation, roster,"
    " gated, mirror_gated, joint"
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
        # Migration 23's columns: NULL until the head manifest is read again (none gated then).
        gated=_FEDERATION.decode(row[11]) if len(row) > 11 and row[11] is not None else (),
        mirror_gated=bool(row[12]) if len(row) > 12 else False,
        # Migration 24's column: what the joint actions binding the origin demand, as its head
        # manifest declares them (NULL until that manifest is read again: nothing declared then).
        joint=_JOINT.decode(row[13]) if len(row) > 13 and row[13] is not None else NO_JOINT,
    )


def origin_states(
    conn: sqlite3.Connection, *, joint: Mapping[str, JointRules] | None = None
) -> dict[str, CollectiveState]:
    """Each origin's collective state, as its latest verified manifest declares it, with what
    the joint actions binding it demand now as this node holds them (``joint``: co-op id ->
    rules, :meth:`JointKeeper.all_rules`) joined to what the origin declares of them itself
    (:func:`joint_union`: a peer that cannot verify an action still honours it)."""
    from coop.federation.gossip import collective_state

    rows = conn.execute(f"SELECT {HEAD_COLUMNS} FROM fed_origins").fetchall()
    scopes = roster_scopes(conn)
    states = {row[0]: collective_state(head_from_row(row), scopes) for row in rows}
    for origin, rules in (joint or {}).items():
        if origin in states and rules:
            state = states[origin]
            states[origin] = msgspec.structs.replace(state, joint=joint_union(state.joint, rules))
    return states


def joint_union(declared: JointRules, verified: JointRules) -> JointRules:
    """What two views of the joint actions binding one co-op demand together: each only ever
    holds records in, so both hold (freeze if either, every embargo, the earliest
    evaluation-only start, the smaller volume cap, the verified preference first)."""
    if not declared:
        return verified
    if not verified:
        return declared
    since = [s for s in (declared.eval_only_since, verified.eval_only_since) if s is not None]
    caps = [c for c in (declared.monthly_records, verified.monthly_records) if c is not None]
    return JointRules(
        freeze=declared.freeze or verified.freeze,
        embargoes=tuple(dict.fromkeys(verified.embargoes + declared.embargoes)),
        eval_only_since=min(since) if since else None,
        ai_use=verified.ai_use if verified.ai_use is not None else declared.ai_use,
        monthly_records=min(caps) if caps else None,
        actions=tuple(sorted(set(declared.actions) | set(verified.actions))),
    )


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
    created_at: int | None = None


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
        created_at=own.created_at,
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
        created_at=row[9] if len(row) > 9 else None,
    )
