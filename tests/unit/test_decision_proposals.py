"""Decision proposals: a proposal may decide an act (a registered path) instead of a setting."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coop.governance import Choice, InvalidValueError, ProposalStatus, SettingClass, Signer
from coop.node.collective import audit as audit_log
from coop.node.collective import proposals
from coop.node.collective.settings import Actor
from coop.node.errors import StateError
from coop.node.members.accounts import Member
from coop.node.runtime import Node

from factories import make_member, make_node

ADMIN = Actor("ada", admin=True)


class _Act:
    """A test act: records what was applied in a table of its own."""

    def __init__(self, cls: SettingClass) -> None:
        self.cls = cls
        self.applied: list[tuple[Any, int]] = []

    def classes(self, conn: sqlite3.Connection, value: Any) -> set[SettingClass]:
        return {self.cls}

    def check(self, conn: sqlite3.Connection, value: Any) -> None:
        if value == "impossible":
            raise InvalidValueError("no such act", field="test.act")

    def apply(self, conn: sqlite3.Connection, value: Any, *, at: int, signer: Signer, proposal: int) -> None:
        if value == "gone":
            raise StateError("the act is no longer possible", field="test.act")
        conn.execute("CREATE TABLE IF NOT EXISTS test_acts (value TEXT, proposal INTEGER)")
        conn.execute("INSERT INTO test_acts VALUES (?, ?)", (value, proposal))
        self.applied.append((value, proposal))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path)
    try:
        yield node
    finally:
        node.close()
        proposals._DECISIONS.pop("test.act", None)


def _voters(node: Node, n: int) -> list[Member]:
    return [make_member(node, f"voter{i}")[0] for i in range(n)]


def _actions(node: Node) -> list[str]:
    return [e.action for e in node.store.read(audit_log.audit_entries)]


def test_a_passed_decision_applies_its_act_and_changes_no_setting(node: Node) -> None:
    act = _Act(SettingClass.VOLUME_CAP)
    proposals.register_decision("test.act", act)
    voters = _voters(node, 4)
    before = node.settings()
    proposal = node.propose({"test.act": "go"}, reason="act together", actor=ADMIN)
    assert proposal.classes == ["volume_cap"]
    node.vote(proposal.id, voters[0], Choice.YES)
    passed = node.vote(proposal.id, voters[1], Choice.YES)
    assert passed.status is ProposalStatus.PASSED
    assert act.applied == [("go", proposal.id)]
    assert node.settings() == before  # no settings version for an act
    assert passed.settings_version is None
    assert _actions(node)[-1] == "proposal.passed"
    assert node.verify_audit()


def test_the_kinds_setting_class_rule_decides_quorum_and_threshold(node: Node) -> None:
    proposals.register_decision("test.act", _Act(SettingClass.PAYOUT))
    proposal = node.propose({"test.act": "go"}, reason="act together", actor=ADMIN)
    rule = node.settings().settings.rules.rule(SettingClass.PAYOUT)
    assert (proposal.quorum_percent, proposal.threshold_percent) == (
        rule.quorum_percent,
        rule.threshold_percent,
    )


def test_a_decision_is_checked_when_proposed_and_cannot_ride_with_settings(node: Node) -> None:
    proposals.register_decision("test.act", _Act(SettingClass.EMBARGO))
    with pytest.raises(InvalidValueError) as impossible:
        node.propose({"test.act": "impossible"}, reason="x", actor=ADMIN)
    assert impossible.value.field == "test.act"
    with pytest.raises(InvalidValueError) as mixed:
        node.propose({"test.act": "go", "embargo.on": True}, reason="x", actor=ADMIN)
    assert mixed.value.field == "changes"


def test_an_act_impossible_by_the_time_the_vote_passes_is_logged_and_the_vote_stands(node: Node) -> None:
    act = _Act(SettingClass.VOLUME_CAP)
    proposals.register_decision("test.act", act)
    voters = _voters(node, 4)
    proposal = node.propose({"test.act": "gone"}, reason="too late", actor=ADMIN)
    node.vote(proposal.id, voters[0], Choice.YES)
    passed = node.vote(proposal.id, voters[1], Choice.YES)
    assert passed.status is ProposalStatus.PASSED
    assert act.applied == []
    entries = node.store.read(audit_log.audit_entries)
    assert entries[-1].action == "decision.unapplied"
    assert entries[-1].payload["path"] == "test.act"
    assert node.verify_audit()


def test_an_unregistered_path_is_still_an_unknown_setting(node: Node) -> None:
    with pytest.raises(InvalidValueError):
        node.propose({"test.act": "go"}, reason="x", actor=ADMIN)
