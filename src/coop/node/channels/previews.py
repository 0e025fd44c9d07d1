"""Previews: the few words of a released record the co-op may announce (microblog, feed).

A preview is what the public catalogue already shows of a record -- its public title (first
line, at most 100 characters), label, licence, link -- and nothing else.  Only records the
catalogue shows now are previewed (not under embargo, not in a gated bucket, not held by a
joint action binding the co-op; the same SQL and the same policy check the pages use), whose
AI-use preference refuses nothing, whose member lets the co-op announce them
(``members.announce``), in the public scope, never withdrawn.  Highlighted records
(``highlights``, chosen by admins) come first.

What the pages hide depends on the settings and on the joint actions binding the co-op, which
live in the node's federation keeper, not in the database: :func:`hidden_now` reads both, and
:func:`previews` takes them (no default, so no caller forgets the joint rules).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from typing import Final, Protocol

import msgspec

from coop.governance import (
    AttributionMode,
    Audience,
    CollectiveState,
    Embargo,
    EvalConsent,
    GovernanceError,
    JointRules,
    License,
    RecordFacts,
    RecordState,
    Scope,
    disclose,
    parse_ai_use,
)
from coop.node.collective.settings import SettingsView
from coop.node.policy import NO_JOINT
from coop.node.releases.channel_reads import preview_rows

__all__ = ["TITLE_CHARS", "Hidden", "Preview", "hidden_now", "preview_title", "previews", "refuses_nothing"]

TITLE_CHARS: Final = 100
_ELLIPSIS: Final = "…"


class Preview(msgspec.Struct, frozen=True, kw_only=True):
    """One record as an announcement may show it: what its catalogue page shows first."""

    uid: str
    seq: int
    title: str  # the catalogue's public title: first line, at most TITLE_CHARS characters
    license: str
    label: str
    url: str  # base_url + /browse/<uid>
    version: int  # the release that first carried it
    created_at: int


class Hidden(msgspec.Struct, frozen=True, kw_only=True):
    """What the public pages hide now: the embargo, the gated buckets, the joint rules."""

    embargo: Embargo = Embargo()
    gated: frozenset[str] = frozenset()
    joint: JointRules = NO_JOINT


class _Federation(Protocol):
    @property
    def joint(self) -> _Joint: ...


class _Joint(Protocol):
    def rules(self) -> JointRules: ...


class _Node(Protocol):
    def settings(self) -> SettingsView: ...

    @property
    def federation(self) -> _Federation: ...


def hidden_now(node: _Node) -> Hidden:
    """What the node's public pages hide now (read outside any transaction)."""
    settings = node.settings().settings
    return Hidden(
        embargo=settings.embargo,
        gated=frozenset(settings.access.gated),
        joint=node.federation.joint.rules(),
    )


def preview_title(title: str, limit: int = TITLE_CHARS) -> str:
    """The first non-blank line of ``title``, spaces collapsed, cut to ``limit`` characters
    (an ellipsis marks a cut)."""
    first = next((line for line in title.splitlines() if line.strip()), "")
    words = " ".join(first.split())
    if len(words) <= limit:
        return words
    return words[: limit - 1].rstrip() + _ELLIPSIS


def refuses_nothing(ai_use: str) -> bool:
    """Whether an AI-use preference refuses no use (``train-ai=n`` or ``search=n`` refuse one;
    a preference that cannot be read is taken as a refusal)."""
    try:
        value = parse_ai_use(ai_use).value
    except (GovernanceError, ValueError):
        return False
    return all(pref is None or pref.allow for pref in (value.train_ai, value.search))


def previews(
    conn: sqlite3.Connection,
    *,
    base_url: str,
    hidden: Hidden,
    version: int | None = None,
    uids: Collection[str] | None = None,
    limit: int,
    highlighted_first: bool = True,
) -> list[Preview]:
    """Up to ``limit`` previews, oldest first (highlighted ones before the others).

    ``version``: only records first released in that release; ``uids``: only those records.
    """
    if limit <= 0:
        return []
    state = CollectiveState(embargo=hidden.embargo, gated=hidden.gated, joint=hidden.joint)
    base = base_url.rstrip("/")
    found: list[Preview] = []
    rows = preview_rows(
        conn,
        embargo=hidden.embargo,
        gated=hidden.gated,
        joint=hidden.joint,
        version=version,
        uids=uids,
        highlighted_first=highlighted_first,
    )
    for row in rows:
        if not refuses_nothing(row.ai_use):
            continue
        facts = RecordFacts(
            uid=row.uid,
            scope=Scope.PUBLIC,
            license=License(row.license),
            ai_use=row.ai_use,
            eval=EvalConsent.NO,
            attribution=AttributionMode.ANONYMOUS,
            state=RecordState.RELEASED,
            admitted=True,
            tags=row.tags,
            language=row.language,
            created_at=row.created_at,
        )
        # The policy asked once more, as the pages ask it of every row they show.
        if not disclose(facts, state, Audience.PUBLIC):
            continue
        found.append(
            Preview(
                uid=row.uid,
                seq=row.seq,
                title=preview_title(row.title),
                license=row.license,
                label=row.label,
                url=f"{base}/browse/{row.uid}",
                version=row.released_in,
                created_at=row.created_at,
            )
        )
        if len(found) >= limit:
            break
    return found
