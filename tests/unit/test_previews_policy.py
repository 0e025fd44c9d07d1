"""Previews show only what the catalogue shows now, of records their members let announce.

The records come from :mod:`previews_templates` (named cases written apart from the rules),
put straight into a migrated database (members, contributions, catalogue rows), so the SQL and
the policy check of :func:`coop.node.channels.previews.previews` run for real.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coop.governance import Embargo, JointRules, JointSelector
from coop.node.channels.previews import TITLE_CHARS, Hidden, preview_title, previews, refuses_nothing
from coop.node.storage.migrations import migrate

from previews_templates import GATED, HIDDEN_TAG, JOINT_LANGUAGE, TEMPLATES

BASE = "https://coop.example.org"
HIDDEN = Hidden(
    embargo=Embargo(on=True, tags=(HIDDEN_TAG,)),
    gated=frozenset({GATED}),
    joint=JointRules(embargoes=(JointSelector(languages=(JOINT_LANGUAGE,)),), actions=("a1",)),
)


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(":memory:")
    try:
        migrate(db)
        yield db
    finally:
        db.close()


def _add(db: sqlite3.Connection, seq: int, template: dict[str, Any], *, highlighted: bool = False) -> str:
    """One record as the template says: its member, contribution, catalogue row (and tombstone)."""
    uid = f"0190aaaa-0000-7000-8000-{seq:012d}"
    member = f"member-{seq}"
    db.execute(
        "INSERT INTO members (id, name, role, provider, external_id, contributor_hash, created_at, announce)"
        " VALUES (?, ?, 'member', 'local', ?, ?, 1, ?)",
        (seq, member, member, f"hash-{seq}", int(template.get("announce", True))),
    )
    withdrawn = template.get("withdrawn", False)
    state = "withdrawn" if withdrawn else template.get("state", "released")
    licence = template.get("license", "CC-BY-4.0")
    tags = json.dumps(template.get("tags", []))
    language = template.get("language", "en")
    db.execute(
        "INSERT INTO contributions (seq, uid, member_id, state, channel, created_at, updated_at, label,"
        " license, ai_use, scope, eval, language, tags, released_in, withdrawn_at)"
        " VALUES (?, ?, ?, ?, 'api', 1000, 1000, 'good', ?, ?, ?, 'no', ?, ?, 1, ?)",
        (
            seq,
            uid,
            seq,
            state,
            licence,
            template.get("ai_use", "train-ai=y"),
            template.get("scope", "public"),
            language,
            tags,
            2000 if withdrawn else None,
        ),
    )
    db.execute(
        "INSERT INTO catalog (seq, uid, label, license, model, language, tags, contributor, created_at,"
        " released_in, title) VALUES (?, ?, 'good', ?, NULL, ?, ?, 'anonymous', 1000, 1, ?)",
        (seq, uid, licence, language, tags, template.get("title", f"A question about topic {seq}")),
    )
    if withdrawn or template.get("tombstoned"):
        db.execute("INSERT INTO tombstones (uid, at, reason) VALUES (?, 2000, 'withdrawn')", (uid,))
    if highlighted:
        db.execute("INSERT INTO highlights (seq, at, actor) VALUES (?, 3000, 'admin')", (seq,))
    return uid


@pytest.mark.parametrize(("name", "template", "shown"), TEMPLATES, ids=[t[0] for t in TEMPLATES])
def test_previews_template_record_shown_only_when_allowed(
    conn: sqlite3.Connection, name: str, template: dict[str, Any], shown: bool
) -> None:
    uid = _add(conn, 1, template)
    found = previews(conn, base_url=BASE, hidden=HIDDEN, limit=10)
    assert [p.uid for p in found] == ([uid] if shown else []), name


def test_previews_without_the_hidden_state_show_embargoed_gated_and_joint_records(
    conn: sqlite3.Connection,
) -> None:
    """The three page filters are what hides those records (not some other accident)."""
    uids = [
        _add(conn, 1, {"tags": [HIDDEN_TAG]}),
        _add(conn, 2, {"license": GATED}),
        _add(conn, 3, {"language": JOINT_LANGUAGE}),
    ]
    assert previews(conn, base_url=BASE, hidden=HIDDEN, limit=10) == []
    assert [p.uid for p in previews(conn, base_url=BASE, hidden=Hidden(), limit=10)] == uids


def test_previews_eval_only_joint_action_hides_records_made_after_it(conn: sqlite3.Connection) -> None:
    _add(conn, 1, {})  # created at 1000
    assert previews(conn, base_url=BASE, hidden=Hidden(joint=JointRules(eval_only_since=500)), limit=5) == []
    assert (
        len(previews(conn, base_url=BASE, hidden=Hidden(joint=JointRules(eval_only_since=5000)), limit=5))
        == 1
    )


def test_previews_title_first_line_at_most_100_characters(conn: sqlite3.Connection) -> None:
    _add(conn, 1, {"title": "How do I bake bread?\nMy address is 1 Main St"})
    _add(conn, 2, {"title": "long " * 80})
    short, long = previews(conn, base_url=BASE, hidden=HIDDEN, limit=10)
    assert short.title == "How do I bake bread?"
    assert len(long.title) == TITLE_CHARS and long.title.endswith("…")
    assert short.url == f"{BASE}/browse/{short.uid}"


def test_previews_highlighted_first_then_oldest_and_limit(conn: sqlite3.Connection) -> None:
    uids = [_add(conn, seq, {}, highlighted=seq == 3) for seq in range(1, 5)]
    assert [p.uid for p in previews(conn, base_url=BASE, hidden=HIDDEN, limit=3)] == [
        uids[2],
        uids[0],
        uids[1],
    ]
    plain = previews(conn, base_url=BASE, hidden=HIDDEN, limit=10, highlighted_first=False)
    assert [p.uid for p in plain] == uids


def test_previews_version_and_uids_select_records(conn: sqlite3.Connection) -> None:
    first = _add(conn, 1, {})
    second = _add(conn, 2, {})
    conn.execute("UPDATE catalog SET released_in = 2 WHERE seq = 2")
    assert [p.uid for p in previews(conn, base_url=BASE, hidden=HIDDEN, version=2, limit=5)] == [second]
    assert [p.uid for p in previews(conn, base_url=BASE, hidden=HIDDEN, uids=[first], limit=5)] == [first]
    assert previews(conn, base_url=BASE, hidden=HIDDEN, uids=[], limit=5) == []
    assert previews(conn, base_url=BASE, hidden=HIDDEN, limit=0) == []


@pytest.mark.parametrize(
    ("ai_use", "expected"),
    [
        ("", True),
        ("train-ai=y", True),
        ("train-ai=y, search=y", True),
        ("train-ai=n", False),
        ("search=n", False),
        ("tdm=n", False),
        ("train-ai=y, nonsense=n", True),  # an unknown label refuses nothing the co-op knows
        ("train-ai=maybe", False),  # unreadable: taken as a refusal
        ("=", False),
    ],
)
def test_refuses_nothing_reads_the_preference(ai_use: str, expected: bool) -> None:
    assert refuses_nothing(ai_use) is expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    picks=st.lists(
        st.tuples(st.integers(min_value=0, max_value=len(TEMPLATES) - 1), st.booleans()),
        min_size=1,
        max_size=12,
    ),
    limit=st.integers(min_value=1, max_value=15),
)
def test_previews_property_exactly_the_allowed_records(picks: Sequence[tuple[int, bool]], limit: int) -> None:
    """Any mix of the templates, some highlighted: previews are the allowed records, highlighted
    first, each showing nothing but its catalogue facts."""
    db = sqlite3.connect(":memory:")
    try:
        migrate(db)
        allowed: list[tuple[bool, int, str]] = []
        for seq, (index, highlighted) in enumerate(picks, 1):
            _name, template, shown = TEMPLATES[index]
            uid = _add(db, seq, template, highlighted=highlighted)
            if shown:
                allowed.append((not highlighted, seq, uid))
        found = previews(db, base_url=BASE, hidden=HIDDEN, limit=limit)
    finally:
        db.close()
    assert [p.uid for p in found] == [uid for _h, _s, uid in sorted(allowed)][:limit]
    for preview in found:
        assert len(preview.title) <= TITLE_CHARS and "\n" not in preview.title
        assert "Main St" not in preview.title  # only the first line
        assert preview.url == f"{BASE}/browse/{preview.uid}"
        assert preview.license != GATED and preview.version == 1


@given(st.text(max_size=400))
def test_preview_title_never_longer_than_the_limit_nor_multi_line(title: str) -> None:
    shown = preview_title(title)
    assert len(shown) <= TITLE_CHARS
    assert "\n" not in shown and "\r" not in shown
    first = next((line for line in title.splitlines() if line.strip()), "")
    assert shown.removesuffix("…").rstrip() in " ".join(first.split())
