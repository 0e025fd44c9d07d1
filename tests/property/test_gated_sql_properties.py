"""The gated buckets' SQL form (the catalogue's pages) agrees with the disclosure policy.

Pages filter in SQL for speed; the policy is the rule.  Random rows (licence, language, tags)
and random gates and embargoes on a real SQLite table: a row passes the SQL (``gated_sql``
alone, and the catalogue's whole hidden condition) exactly when the policy lets it reach the
public.
"""

from __future__ import annotations

import json
import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from coop.governance import (
    AttributionMode,
    Audience,
    CollectiveState,
    Embargo,
    EvalConsent,
    License,
    RecordFacts,
    RecordState,
    Scope,
    disclose,
)
from coop.node.policy import gated_sql
from coop.node.releases.catalog import _hidden_sql

LICENCES = [lic.value for lic in License]
TAGS = ["tax", "Tax", "health", "law", "ünï"]
rows = st.lists(
    st.tuples(
        st.sampled_from(LICENCES),
        st.one_of(st.none(), st.sampled_from(["en", "en-GB", "de", "fr", ""])),
        st.lists(st.sampled_from(TAGS), max_size=3, unique=True),
    ),
    max_size=12,
)
gates = st.frozensets(st.sampled_from(LICENCES))
embargoes = st.builds(
    Embargo,
    on=st.booleans(),
    tags=st.lists(st.sampled_from(TAGS), max_size=2, unique=True).map(tuple),
    languages=st.lists(st.sampled_from(["en", "de", "fr"]), max_size=2, unique=True).map(tuple),
)


def _allowed(licence: str, language: str | None, tags: list[str], state: CollectiveState) -> bool:
    facts = RecordFacts(
        uid="u",
        scope=Scope.PUBLIC,
        license=License(licence),
        ai_use="",
        eval=EvalConsent.YES,
        attribution=AttributionMode.ANONYMOUS,
        state=RecordState.RELEASED,
        admitted=True,
        tags=tuple(tags),
        language=language,
    )
    return bool(disclose(facts, state, Audience.PUBLIC))


def _table(spec: list[tuple[str, str | None, list[str]]]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE k (id INTEGER PRIMARY KEY, license TEXT NOT NULL, language TEXT, tags TEXT NOT NULL)"
    )
    conn.executemany(
        "INSERT INTO k (id, license, language, tags) VALUES (?, ?, ?, ?)",
        [(i, lic, lang, json.dumps(t)) for i, (lic, lang, t) in enumerate(spec)],
    )
    return conn


@settings(max_examples=150)
@given(rows, gates)
def test_gated_sql_agrees_with_the_policy(
    spec: list[tuple[str, str | None, list[str]]], gated: frozenset[str]
) -> None:
    conn = _table(spec)
    try:
        state = CollectiveState(gated=gated)
        expected = {i for i, (lic, lang, t) in enumerate(spec) if _allowed(lic, lang, t, state)}
        sql, params = gated_sql(gated, license="k.license")
        shown = {r[0] for r in conn.execute(f"SELECT id FROM k WHERE 1{sql}", params)}
    finally:
        conn.close()
    assert shown == expected


@settings(max_examples=150)
@given(rows, gates, embargoes)
def test_gated_sql_catalogue_hidden_condition_agrees_with_the_policy(
    spec: list[tuple[str, str | None, list[str]]], gated: frozenset[str], embargo: Embargo
) -> None:
    conn = _table(spec)
    try:
        state = CollectiveState(embargo=embargo, gated=gated)
        expected = {i for i, (lic, lang, t) in enumerate(spec) if _allowed(lic, lang, t, state)}
        sql, params = _hidden_sql(embargo, gated)
        shown = {r[0] for r in conn.execute(f"SELECT id FROM k WHERE 1{sql}", params)}
    finally:
        conn.close()
    assert shown == expected
