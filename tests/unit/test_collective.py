"""Governance on a node's store: direct changes, proposals and votes, the audit log of both."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from coop.governance import Choice, PolicyError, ProposalStatus
from coop.node import collective
from coop.node.collective import Actor
from coop.node.errors import ForbiddenError, StateError
from coop.node.runtime import Node

from factories import make_member, make_node

ADMIN = Actor("ada", admin=True)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path)
    try:
        yield node
    finally:
        node.close()


def _actions(node: Node) -> list[str]:
    return [e.action for e in node.store.read(collective.audit_entries)]


def test_new_node_starts_with_audited_settings_version_one(node: Node) -> None:
    assert node.settings().version == 1
    assert _actions(node) == ["settings.init"]
    assert node.verify_audit()


def test_change_settings_admin_alone_where_rules_allow(node: Node) -> None:
    view = node.change_settings({"embargo.on": True}, actor=ADMIN)
    assert view.version == 2
    assert view.settings.embargo.on
    last = node.store.read(collective.audit_entries)[-1]
    assert (last.action, last.actor) == ("settings.change", "ada")
    assert last.payload["changes"] == {"embargo.on": True}


def test_change_settings_same_value_again_is_no_new_version(node: Node) -> None:
    node.change_settings({"quality_freeze": True}, actor=ADMIN)
    again = node.change_settings({"quality_freeze": True}, actor=ADMIN)
    assert again.version == 2
    assert _actions(node).count("settings.change") == 1


def test_change_settings_needing_a_vote_is_refused(node: Node) -> None:
    with pytest.raises(PolicyError) as caught:
        node.change_settings({"payout.contributors_bp": 6000, "payout.commons_bp": 4000}, actor=ADMIN)
    assert "needs a vote" in caught.value.message
    assert node.settings().version == 1


def test_change_settings_by_a_member_is_forbidden(node: Node) -> None:
    with pytest.raises(ForbiddenError):
        node.change_settings({"embargo.on": True}, actor=Actor("ben", admin=False))


def _electorate(node: Node, n: int) -> list[object]:
    return [make_member(node, f"voter{i}")[0] for i in range(n)]


def test_proposal_passes_at_quorum_and_threshold_and_applies(node: Node) -> None:
    voters = _electorate(node, 4)
    proposal = node.propose({"defaults.scope": "node"}, reason="keep new chats home", actor=ADMIN)
    assert proposal.electorate == 4
    after_one = node.vote(proposal.id, voters[0], Choice.YES)  # type: ignore[arg-type]
    assert after_one.status is ProposalStatus.OPEN
    assert node.settings().settings.defaults.scope == "public"
    passed = node.vote(proposal.id, voters[1], Choice.YES)  # type: ignore[arg-type]
    assert passed.status is ProposalStatus.PASSED
    assert node.settings().settings.defaults.scope == "node"
    assert passed.settings_version == node.settings().version
    assert _actions(node)[-4:] == ["vote.cast", "vote.cast", "proposal.passed", "settings.change"]
    assert node.verify_audit()


def test_proposal_missing_quorum_expires_and_changes_nothing(node: Node) -> None:
    voters = _electorate(node, 4)
    proposal = node.propose({"volume_cap.monthly_records": 10}, reason="cap it", actor=ADMIN)
    node.vote(proposal.id, voters[0], Choice.YES)  # type: ignore[arg-type]
    before = node.settings()
    node.store.write(lambda c: c.execute("UPDATE proposals SET closes_at = 0 WHERE id = ?", (proposal.id,)))
    assert node.close_expired_proposals() == [proposal.id]
    closed = node.store.read(lambda c: collective.get_proposal(c, proposal.id))
    assert closed.status is ProposalStatus.EXPIRED
    assert node.settings() == before
    assert _actions(node)[-1] == "proposal.expired"


def test_vote_twice_is_refused(node: Node) -> None:
    voters = _electorate(node, 5)
    proposal = node.propose({"defaults.eval": "n"}, reason="opt-in eval", actor=ADMIN)
    node.vote(proposal.id, voters[0], Choice.NO)  # type: ignore[arg-type]
    with pytest.raises(StateError) as caught:
        node.vote(proposal.id, voters[0], Choice.YES)  # type: ignore[arg-type]
    assert caught.value.field == "voter"


def test_vote_on_closed_proposal_is_refused(node: Node) -> None:
    voters = _electorate(node, 4)
    proposal = node.propose({"defaults.eval": "n"}, reason="opt-in eval", actor=ADMIN)
    node.vote(proposal.id, voters[0], Choice.YES)  # type: ignore[arg-type]
    passed = node.vote(proposal.id, voters[1], Choice.YES)  # type: ignore[arg-type]
    assert passed.status is ProposalStatus.PASSED
    with pytest.raises(StateError, match="closed"):
        node.vote(proposal.id, voters[2], Choice.NO)  # type: ignore[arg-type]


def test_vote_after_voting_time_closes_it_as_expired(node: Node) -> None:
    voters = _electorate(node, 3)
    proposal = node.propose({"defaults.eval": "n"}, reason="opt-in eval", actor=ADMIN)
    node.store.write(lambda c: c.execute("UPDATE proposals SET closes_at = 1 WHERE id = ?", (proposal.id,)))
    with pytest.raises(StateError, match="closed"):
        node.vote(proposal.id, voters[0], Choice.YES)  # type: ignore[arg-type]
    assert node.store.read(lambda c: collective.get_proposal(c, proposal.id)).status is ProposalStatus.EXPIRED


def test_vote_by_member_who_joined_after_opening_is_forbidden(node: Node) -> None:
    _electorate(node, 2)
    proposal = node.propose({"defaults.eval": "n"}, reason="opt-in eval", actor=ADMIN)
    newcomer, _ = make_member(node, "newcomer")
    node.store.write(
        lambda c: c.execute(
            "UPDATE members SET created_at = ? WHERE id = ?", (proposal.opened_at + 5, newcomer.id)
        )
    )
    with pytest.raises(ForbiddenError):
        node.vote(proposal.id, newcomer, Choice.YES)


def test_open_proposal_with_invalid_change_is_refused_before_any_vote(node: Node) -> None:
    with pytest.raises(Exception, match="below zero"):
        node.propose({"volume_cap.monthly_records": -5}, reason="x", actor=ADMIN)
    assert node.store.read(collective.list_proposals) == []


def test_verify_audit_edited_row_is_caught(node: Node) -> None:
    node.change_settings({"embargo.on": True}, actor=ADMIN)
    node.change_settings({"embargo.on": False}, actor=ADMIN)
    with sqlite3.connect(node.data.db_path) as conn:
        conn.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2")
    report = node.verify_audit()
    assert report.first_bad == 2


def test_verify_audit_deleted_row_is_caught(node: Node) -> None:
    for flag in (True, False, True):
        node.change_settings({"quality_freeze": flag}, actor=ADMIN)
    with sqlite3.connect(node.data.db_path) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq = 2")
    report = node.verify_audit()
    assert report.first_bad == 2
    assert "missing" in (report.problem or "")
