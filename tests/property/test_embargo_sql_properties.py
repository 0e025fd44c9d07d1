"""The embargo's SQL forms (catalogue pages, release cuts) agree with the disclosure policy.

Pages and cuts filter in SQL for speed; the policy is the rule.  Random rows and
random embargoes on a real SQLite table: a row passes the SQL exactly when the
policy would let it out.
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
from coop.node.releases.catalog import _embargo_sql
from coop.node.releases.sources import _embargo_condition

TAGS = ["tax", "Tax", "TAX", "health", "law", "a'b", "ünï", "ÜNÏ"]
rows = st.lists(
    st.tuples(
        st.one_of(
            st.none(), st.sampled_from(["en", "EN", "en-GB", "de", "de-CH", "id-ID", "ID", "fr", "", "eng"])
        ),
        st.lists(st.sampled_from(TAGS), max_size=3, unique=True),
    ),
    max_size=12,
)
embargoes = st.builds(
    Embargo,
    on=st.booleans(),
    tags=st.lists(st.sampled_from(TAGS), max_size=2, unique=True).map(tuple),
    languages=st.lists(st.sampled_from(["en", "de", "fr", "id", "en-GB", "ID"]), max_size=2, unique=True).map(
        tuple
    ),
)


def _allowed(language: str | None, tags: list[str], embargo: Embargo) -> bool:
    facts = RecordFacts(
        uid="u",
        scope=Scope.PUBLIC,
        license=License.CC0,
        ai_use="",
        eval=EvalConsent.YES,
        attribution=AttributionMode.ANONYMOUS,
        state=RecordState.RELEASED,
        admitted=True,
        tags=tuple(tags),
        language=language,
    )
    return bool(disclose(facts, CollectiveState(embargo=embargo), Audience.PUBLIC))


@settings(max_examples=150)
@given(rows, embargoes)
def test_embargo_sql_catalogue_and_cut_agree_with_the_policy(
    spec: list[tuple[str | None, list[str]]], embargo: Embargo
) -> None:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE k (id INTEGER PRIMARY KEY, language TEXT, tags TEXT NOT NULL)")
        conn.executemany(
            "INSERT INTO k (id, language, tags) VALUES (?, ?, ?)",
            [(i, lang, json.dumps(t)) for i, (lang, t) in enumerate(spec)],
        )
        expected = {i for i, (lang, t) in enumerate(spec) if _allowed(lang, t, embargo)}
        catalogue_sql, params = _embargo_sql(embargo)
        catalogue = {r[0] for r in conn.execute(f"SELECT id FROM k WHERE 1{catalogue_sql}", params)}
        cut_sql, cut_params = _embargo_condition(embargo)
        cut = {r[0] for r in conn.execute(f"SELECT id FROM k WHERE 1{cut_sql}", cut_params)}
    finally:
        conn.close()
    assert catalogue == expected
    assert cut == expected
