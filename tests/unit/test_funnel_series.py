"""Daily series and policy markers for the funnel charts, from a migrated database (no network)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coop.governance.signing import Signer
from coop.node.collective.audit import AuditAction, audit
from coop.node.funnel import (
    DAY,
    FunnelStep,
    marker_label,
    published_by_route,
    route_funnel,
    series,
    weakest_step,
)
from coop.node.storage.migrations import migrate
from coop.node.storage.writer import connect

SIGNER = Signer(bytes(range(32)))
TODAY = 20_000 * DAY  # a day's start (UTC)
NOW = TODAY + DAY - 1  # the last second of that day


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    db = connect(tmp_path / "node.db")
    try:
        migrate(db)
        yield db
    finally:
        db.close()


def _record(
    conn: sqlite3.Connection,
    channel: str,
    seq: int,
    *,
    route: str = "web",
    published_at: int | None,
    retracted_at: int | None = None,
) -> None:
    conn.execute(
        "INSERT INTO channel_records (channel, seq, route, version, state, opened_at, published_at,"
        " withdrawn_at, retracted_at) VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?)",
        (
            channel,
            seq,
            route,
            "merged" if published_at is not None else "open",
            published_at or TODAY - 5 * DAY,
            published_at,
            retracted_at,
            retracted_at,
        ),
    )


def _audit(conn: sqlite3.Connection, at: int, action: AuditAction, payload: Any, actor: str = "ada") -> None:
    audit(conn, signer=SIGNER, at=at, actor=actor, action=action, payload=payload)


def test_series_counts_each_record_on_the_utc_day_it_went_live(conn: sqlite3.Connection) -> None:
    _record(conn, "git", 1, published_at=TODAY - DAY)  # yesterday's first second
    _record(conn, "git", 2, published_at=TODAY - 1)  # yesterday's last second
    _record(conn, "git", 3, published_at=TODAY)  # today's first second
    _record(conn, "site", 1, published_at=NOW)
    _record(conn, "git", 4, published_at=TODAY - 3 * DAY)  # before a 3-day window: left out
    _record(conn, "hf", 1, published_at=None)  # an open pull request: never live
    days = series(conn, now=NOW, days=3)
    assert len(days.dates) == 3
    assert days.dates[-1] == "2024-10-04"  # day 20000 after the epoch
    assert days.start == TODAY - 2 * DAY
    assert days.published == {"git": [0, 2, 1], "hf": [0, 0, 0], "site": [0, 0, 1]}


def test_series_counts_retractions_and_withdrawals_per_day(conn: sqlite3.Connection) -> None:
    _record(conn, "git", 1, published_at=TODAY - 2 * DAY, retracted_at=TODAY + 10)
    _record(conn, "site", 1, published_at=TODAY - 2 * DAY, retracted_at=TODAY - 10)
    conn.execute("INSERT INTO tombstones (uid, at, reason) VALUES ('u1', ?, 'withdrawn')", (TODAY - 20,))
    conn.execute("INSERT INTO tombstones (uid, at, reason) VALUES ('u2', ?, 'withdrawn')", (TODAY + 5,))
    conn.execute(
        "INSERT INTO tombstones (uid, at, reason, replaced_by) VALUES ('u3', ?, 'rectified', 'u4')", (TODAY,)
    )
    days = series(conn, now=NOW, days=2)
    assert days.retracted == {"git": [0, 1], "site": [1, 0]}
    assert days.withdrawals == [1, 1]
    assert days.rectifications == [0, 1]


def test_series_marks_policy_changes_with_public_labels_only(conn: sqlite3.Connection) -> None:
    _audit(
        conn,
        TODAY - DAY + 5,
        AuditAction.SETTINGS_CHANGE,
        {"changes": {"embargo": {"on": True, "tags": ["x"]}}},
    )
    _audit(conn, TODAY + 1, AuditAction.SETTINGS_CHANGE, {"changes": {"quality_freeze": False}})
    _audit(
        conn,
        TODAY + 2,
        AuditAction.SETTINGS_CHANGE,
        {"changes": {"defaults.license": "CC0-1.0", "payout.member_share": 50}},
        actor="proposal 7",
    )
    _audit(conn, TODAY + 3, AuditAction.JOINT_EFFECTIVE, {"action": "a" * 64}, actor="system")
    _audit(conn, TODAY + 4, AuditAction.JOINT_EFFECTIVE, {"action": "b" * 64}, actor="system")  # same day
    _audit(conn, TODAY + 5, AuditAction.MEMBER_ADD, {"member": "robin@example.org"})  # not policy
    _audit(
        conn, TODAY - 5 * DAY, AuditAction.SETTINGS_CHANGE, {"changes": {"quality_freeze": True}}
    )  # too old
    days = series(conn, now=NOW, days=2)
    assert [(m.day, m.label) for m in days.markers] == [
        (0, "embargo on"),
        (1, "quality freeze off"),
        (1, "defaults changed; payout rules changed"),
        (1, "joint action began"),
    ]
    text = repr(days)
    for private in ("ada", "proposal 7", "robin", "aaaa", "CC0"):
        assert private not in text


@pytest.mark.parametrize(
    ("action", "payload", "label"),
    [
        ("settings.change", {"changes": {"embargo.on": False}}, "embargo off"),
        ("settings.change", {"changes": {"embargo.tags": ["tax"]}}, "embargo changed"),
        ("settings.change", {"changes": {"access.gated": ["CC-BY-4.0"]}}, "access rules changed"),
        (
            "settings.change",
            {"changes": {"rules.classes.access.admin_alone": False}},
            "decision rules changed",
        ),
        ("settings.change", {"nothing": 1}, "settings changed"),
        ("config.moved", {"keys": {"license": "CC0-1.0"}}, "defaults changed"),
        ("joint.ended", {"action": "x", "status": "expired"}, "joint action ended"),
        ("release.cut", {"version": 3}, None),
        ("settings.init", {"version": 1}, None),
    ],
)
def test_marker_label_names_the_policy_class(action: str, payload: Any, label: str | None) -> None:
    assert marker_label(action, payload) == label


def test_series_of_an_empty_node_is_all_zeros(conn: sqlite3.Connection) -> None:
    days = series(conn, now=NOW, days=90)
    assert len(days.dates) == 90
    assert days.published == {} and days.retracted == {}
    assert days.withdrawals == [0] * 90 and days.markers == []


def test_published_by_route_counts_live_rows_per_route_and_channel(conn: sqlite3.Connection) -> None:
    _record(conn, "git", 1, route="web", published_at=TODAY)
    _record(conn, "git", 2, route="openwebui", published_at=TODAY)
    _record(conn, "site", 1, route="web", published_at=TODAY)
    _record(conn, "git", 3, route="web", published_at=None)
    assert published_by_route(conn) == {"openwebui": {"git": 1}, "web": {"git": 1, "site": 1}}


def test_route_funnel_yields_follow_the_model_and_the_weakest_is_lowest_with_a_base() -> None:
    stages = {"eligible": 0, "captured": 10, "prompt_shown": 8, "consent": 10, "transform_ok": 9}
    steps = route_funnel(stages, {"git": 9, "site": 3}, ["git", "hf", "site"])
    by_key = {s.key: s for s in steps}
    assert [s.key for s in steps] == ["E", "C", "S", "A", "T", "P:git", "P:hf", "P:site"]
    assert by_key["C"].yield_ is None  # E is 0: no base, never the weakest
    assert by_key["S"].yield_ == 0.8 and by_key["A"].yield_ == 1.0  # both of C
    assert by_key["T"].yield_ == 0.9 and by_key["P:site"].yield_ == round(3 / 9, 4)
    assert by_key["P:hf"].count == 0 and by_key["P:hf"].yield_ == 0.0
    assert weakest_step(steps) == "P:hf"


def test_weakest_step_is_none_without_any_base() -> None:
    assert weakest_step([FunnelStep("E", "eligible", 0), FunnelStep("C", "captured", 0, "E", None)]) is None
    assert weakest_step([]) is None


def test_a_route_without_prompts_never_has_its_prompt_step_called_weakest() -> None:
    """Members of the web route share unprompted: no prompt is ever reported there (S = 0). The
    chart must point at a step the route actually took, not at prompts it never showed."""
    stages = {"eligible": 0, "captured": 10, "prompt_shown": 0, "consent": 10, "transform_ok": 6}
    steps = route_funnel(stages, {"git": 6}, ["git"])
    by_key = {s.key: s for s in steps}
    assert by_key["S"].count == 0 and by_key["S"].yield_ is None
    assert weakest_step(steps) == "T"  # 6 of 10 processed: the real leak
