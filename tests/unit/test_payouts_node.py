"""Payouts on a node: a release is paid once, unless a payout explicitly supersedes the one standing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from coop.node import cli
from coop.node.collective import audit as audit_log
from coop.node.collective.payouts import list_payouts
from coop.node.errors import InputError, StateError
from coop.node.http.app import create_app
from coop.node.runtime import Node
from coop.node.storage.migrations import MIGRATIONS, migrate

from factories import contribute, make_member, make_node, process


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path)
    try:
        member, _ = make_member(node, "ada")
        for _ in range(3):
            contribute(node, member, attribution="username")
        process(node)
        node.cut_release()
        yield node
    finally:
        node.close()


def _payout_actions(node: Node) -> list[str]:
    return [e.action for e in node.store.read(audit_log.audit_entries) if e.action.startswith("payout.")]


def test_payout_second_for_the_same_release_is_refused_naming_the_release(node: Node) -> None:
    first = node.payout(1, amount="1000.00", currency="EUR", actor="ada")
    with pytest.raises(StateError) as caught:
        node.payout(1, amount="1000.00", currency="EUR", actor="ada")
    assert caught.value.field == "release"
    assert f"release v1 was already paid (payout {first.id}: 1000.00 EUR)" in caught.value.message
    assert [p.id for p in node.store.read(list_payouts)] == [first.id]
    assert _payout_actions(node) == ["payout.computed"]


def test_payout_superseding_with_a_reason_is_recorded_in_the_audit_log(node: Node) -> None:
    first = node.payout(1, amount="1000.00", currency="EUR", actor="ada")
    second = node.payout(1, amount="1200.00", currency="EUR", actor="ada", supersede="  the buyer paid more ")
    assert (second.supersedes, second.supersede_reason) == (first.id, "the buyer paid more")
    stored = {p.id: p for p in node.store.read(list_payouts)}
    assert stored[first.id].superseded_by == second.id
    assert stored[second.id].superseded_by is None
    entries = node.store.read(audit_log.audit_entries)
    supersede = next(e for e in entries if e.action == "payout.supersede")
    assert supersede.actor == "ada"
    assert supersede.payload == {
        "release": "v1",
        "superseded": first.id,
        "superseded_ledger_sha256": first.digest,
        "payout": second.id,
        "reason": "the buyer paid more",
    }
    assert _payout_actions(node) == ["payout.computed", "payout.supersede", "payout.computed"]
    # The replacement stands now: a third payout needs its own reason again.
    with pytest.raises(StateError, match=f"payout {second.id}"):
        node.payout(1, amount="1.00", currency="EUR", actor="ada")
    assert node.verify_audit()


@pytest.mark.parametrize("reason", ["", "   ", "x" * 2001])
def test_payout_supersede_without_a_real_reason_is_refused(node: Node, reason: str) -> None:
    node.payout(1, amount="10.00", currency="EUR", actor="ada")
    with pytest.raises(InputError) as caught:
        node.payout(1, amount="10.00", currency="EUR", actor="ada", supersede=reason)
    assert caught.value.field == "supersede"
    assert len(node.store.read(list_payouts)) == 1


def test_payout_supersede_with_nothing_to_supersede_is_refused(node: Node) -> None:
    with pytest.raises(StateError) as caught:
        node.payout(1, amount="10.00", currency="EUR", actor="ada", supersede="a mistake")
    assert caught.value.field == "supersede"
    assert node.store.read(list_payouts) == []


def test_payouts_command_second_payout_is_one_line_error(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["payouts", str(node.data.root), "--release", "v1", "--amount", "100.00", "--currency", "EUR"]
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(args) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("coop: error: release v1 was already paid (payout 1: 100.00 EUR)")
    assert "--supersede REASON" in err
    assert cli.main([*args, "--supersede", "counted twice by mistake"]) == 0
    assert "supersedes payout 1: counted twice by mistake" in capsys.readouterr().out


def test_payout_second_over_http_is_a_conflict_unless_it_supersedes(node: Node) -> None:
    _, token = make_member(node, "root", admin=True)
    body = {"release": "v1", "amount": "50.00", "currency": "EUR"}
    with TestClient(create_app(node, background=False)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        assert client.post("/api/v1/governance/payouts", json=body).status_code == 201
        again = client.post("/api/v1/governance/payouts", json=body)
        assert again.status_code == 409
        assert again.json()["field"] == "release"
        replaced = client.post("/api/v1/governance/payouts", json={**body, "supersede": "wrong amount"})
        assert replaced.status_code == 201, replaced.text
        assert replaced.json()["supersedes"] == 1


def test_migration_marks_earlier_payouts_of_a_release_paid_twice_as_superseded(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.sqlite3", isolation_level=None)
    try:
        # The schema before one payout per release, where a release could be paid twice.
        before = MIGRATIONS.index(next(m for m in MIGRATIONS if "supersede_reason" in m))
        for script in MIGRATIONS[:before]:
            for statement in (part.strip() for part in script.split(";")):
                if statement:
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {before}")
        for release in (1, 1, 2, 1):
            conn.execute(
                "INSERT INTO payouts (release, at, actor, currency, amount, ledger, digest)"
                " VALUES (?, 0, 'a', 'EUR', '1.00', x'7b7d', 'd')",
                (release,),
            )
        migrate(conn)
        rows = conn.execute("SELECT id, release, superseded_by FROM payouts ORDER BY id").fetchall()
    finally:
        conn.close()
    assert rows == [(1, 1, 4), (2, 1, 4), (3, 2, None), (4, 1, None)]
