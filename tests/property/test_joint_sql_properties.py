"""The joint actions' SQL form (the catalogue's pages, the static site) agrees with the policy.

Pages filter in SQL for speed; the policy is the rule.  Random rows (licence, language, tags,
creation time) and random joint rules (freeze, embargo selectors by tag, language and licence,
evaluation-only) on a real SQLite table: a row passes the SQL (``joint_sql`` alone, and the
catalogue's whole hidden condition with an embargo and gated buckets) exactly when the policy
lets the co-op's own record reach its own pages.
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
    JointRules,
    JointSelector,
    License,
    RecordFacts,
    RecordState,
    Scope,
    disclose,
)
from coop.node.policy import joint_sql
from coop.node.releases.catalog import _hidden_sql

NOW = 1_700_000_000
LICENCES = list(License)
TAGS = ["tax", "Tax", "TAX", "health", "law", "a'b", "ünï", "ÜNÏ"]
LANGUAGES = ["en", "EN", "en-GB", "de", "de-CH", "id-ID", "ID", "fr", "", "eng"]

Row = tuple[str, str | None, list[str], int | None]

rows = st.lists(
    st.tuples(
        st.sampled_from([lic.value for lic in LICENCES]),
        st.one_of(st.none(), st.sampled_from(LANGUAGES)),
        st.lists(st.sampled_from(TAGS), max_size=3, unique=True),
        st.one_of(st.none(), st.integers(NOW - 5, NOW + 5)),
    ),
    max_size=12,
)
selectors = st.builds(
    JointSelector,
    tags=st.lists(st.sampled_from(TAGS), max_size=2, unique=True).map(tuple),
    languages=st.lists(st.sampled_from(["en", "de", "fr", "id", "en-GB", "ID"]), max_size=2, unique=True).map(
        tuple
    ),
    licenses=st.lists(st.sampled_from(LICENCES), max_size=2, unique=True).map(tuple),
)
joint_rules = st.builds(
    JointRules,
    freeze=st.booleans(),
    embargoes=st.lists(selectors, max_size=3).map(tuple),
    eval_only_since=st.one_of(st.none(), st.integers(NOW - 3, NOW + 3)),
    ai_use=st.one_of(st.none(), st.just("train-ai=n")),
    monthly_records=st.one_of(st.none(), st.integers(0, 5)),
)
gates = st.frozensets(st.sampled_from([lic.value for lic in LICENCES]), max_size=2)
embargoes = st.builds(
    Embargo,
    on=st.booleans(),
    tags=st.lists(st.sampled_from(TAGS), max_size=2, unique=True).map(tuple),
    languages=st.lists(st.sampled_from(["en", "de", "fr"]), max_size=2, unique=True).map(tuple),
)


def _allowed(row: Row, state: CollectiveState) -> bool:
    licence, language, tags, created_at = row
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
        created_at=created_at,
    )
    return bool(disclose(facts, state, Audience.PUBLIC))


def _shown(spec: list[Row], sql: str, params: tuple[object, ...] | list[object]) -> set[int]:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(
            "CREATE TABLE k (id INTEGER PRIMARY KEY, license TEXT NOT NULL, language TEXT,"
            " tags TEXT NOT NULL, created_at INTEGER)"
        )
        conn.executemany(
            "INSERT INTO k (id, license, language, tags, created_at) VALUES (?, ?, ?, ?, ?)",
            [(i, lic, lang, json.dumps(t), at) for i, (lic, lang, t, at) in enumerate(spec)],
        )
        return {r[0] for r in conn.execute(f"SELECT id FROM k WHERE 1{sql}", params)}
    finally:
        conn.close()


@settings(max_examples=200, deadline=None)
@given(rows, joint_rules)
def test_joint_sql_agrees_with_the_policy(spec: list[Row], rules: JointRules) -> None:
    state = CollectiveState(joint=rules)
    expected = {i for i, row in enumerate(spec) if _allowed(row, state)}
    sql, params = joint_sql(
        rules, language="k.language", tags="k.tags", license="k.license", created_at="k.created_at"
    )
    assert _shown(spec, sql, params) == expected


@settings(max_examples=150, deadline=None)
@given(rows, joint_rules, gates, embargoes)
def test_catalogue_hidden_condition_with_joint_rules_agrees_with_the_policy(
    spec: list[Row], rules: JointRules, gated: frozenset[str], embargo: Embargo
) -> None:
    state = CollectiveState(embargo=embargo, gated=gated, joint=rules)
    expected = {i for i, row in enumerate(spec) if _allowed(row, state)}
    sql, params = _hidden_sql(embargo, gated, rules)
    assert _shown(spec, sql, params) == expected


def test_joint_sql_is_empty_without_a_page_demand() -> None:
    # A freeze, a preference shift or a volume cap hides nothing of the co-op's own pages.
    for rules in (JointRules(), JointRules(freeze=True, ai_use="train-ai=n", monthly_records=0)):
        assert joint_sql(rules, language="l", tags="t", license="c", created_at="a") == ("", ())
