"""Governance on a node's store: direct changes, proposals and votes, the audit log of both."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from coop.governance import Choice, PolicyError, ProposalStatus
from coop.node import cli
from coop.node.collective import audit as audit_log
from coop.node.collective import proposals
from coop.node.collective.audithead import read_head
from coop.node.collective.settings import Actor
from coop.node.errors import ForbiddenError, StateError
from coop.node.http.app import create_app
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
    return [e.action for e in node.store.read(audit_log.audit_entries)]


def test_new_node_starts_with_audited_settings_version_one(node: Node) -> None:
    assert node.settings().version == 1
    assert _actions(node) == ["settings.init"]
    assert node.verify_audit()


def test_change_settings_admin_alone_where_rules_allow(node: Node) -> None:
    view = node.change_settings({"embargo.on": True}, actor=ADMIN)
    assert view.version == 2
    assert view.settings.embargo.on
    last = node.store.read(audit_log.audit_entries)[-1]
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
    closed = node.store.read(lambda c: proposals.get_proposal(c, proposal.id))
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
    assert node.store.read(lambda c: proposals.get_proposal(c, proposal.id)).status is ProposalStatus.EXPIRED


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
    assert node.store.read(proposals.list_proposals) == []


def test_verify_audit_edited_row_is_caught(node: Node) -> None:
    node.change_settings({"embargo.on": True}, actor=ADMIN)
    node.change_settings({"embargo.on": False}, actor=ADMIN)
    with closing(sqlite3.connect(node.data.db_path)) as conn, conn:
        conn.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2")
    report = node.verify_audit()
    assert report.first_bad == 2


def test_verify_audit_deleted_row_is_caught(node: Node) -> None:
    for flag in (True, False, True):
        node.change_settings({"quality_freeze": flag}, actor=ADMIN)
    with closing(sqlite3.connect(node.data.db_path)) as conn, conn:
        conn.execute("DELETE FROM audit_log WHERE seq = 2")
    report = node.verify_audit()
    assert report.first_bad == 2
    assert "missing" in (report.problem or "")


# -- the signed head: a cut-off tail of the audit log -------------------------------------


def _cut_tail(node: Node, after: int) -> None:
    with closing(sqlite3.connect(node.data.db_path)) as conn, conn:
        conn.execute("DELETE FROM audit_log WHERE seq > ?", (after,))


def test_verify_audit_deleted_last_entries_are_caught(node: Node) -> None:
    for flag in (True, False, True):
        node.change_settings({"quality_freeze": flag}, actor=ADMIN)
    assert node.verify_audit()
    _cut_tail(node, 2)
    report = node.verify_audit()
    assert not report
    assert report.first_bad == 3
    assert report.problem == "the log ends at entry 2 but the signed head says 4: entries 3 to 4 were cut off"


def test_audit_verify_command_reports_a_cut_off_tail_in_one_line(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    node.change_settings({"quality_freeze": True}, actor=ADMIN)
    _cut_tail(node, 1)
    assert cli.main(["audit", "verify", str(node.data.root)]) == 9
    err = capsys.readouterr().err
    assert err == (
        "coop: error: audit chain broken at entry 2: the log ends at entry 1 but the signed head"
        " says 2: entry 2 was cut off\n"
    )


def test_audit_head_is_a_private_file_naming_the_last_entry(node: Node) -> None:
    node.change_settings({"embargo.on": True}, actor=ADMIN)
    path = node.data.audit_head_path
    assert path.stat().st_mode & 0o777 == 0o600
    head = read_head(path)
    last = node.store.read(audit_log.audit_entries)[-1]
    assert head is not None and (head.seq, head.hash) == (last.seq, last.hash)
    assert head.key == node.identity.public_key.hex()


def test_audit_head_is_kept_as_evidence_when_entries_follow_a_cut(node: Node) -> None:
    for flag in (True, False, True):
        node.change_settings({"quality_freeze": flag}, actor=ADMIN)
    _cut_tail(node, 2)
    for flag in (False, True, False):  # the node goes on: new, validly signed entries 3 to 5
        node.change_settings({"quality_freeze": flag}, actor=ADMIN)
    report = node.verify_audit()
    assert not report
    assert report.first_bad == 4
    assert "not the one the signed head names" in (report.problem or "")


def test_verify_audit_data_dir_without_a_head_opens_with_a_warning_until_the_next_entry(
    tmp_path: Path,
) -> None:
    node = make_node(tmp_path)
    root = node.data.root
    node.change_settings({"embargo.on": True}, actor=ADMIN)
    node.close()
    node.data.audit_head_path.unlink()  # a data directory from before signed heads
    again = Node(root)
    try:
        report = again.verify_audit()
        assert report and report.checked == 2
        assert "no signed head yet" in (report.warning or "")
        assert not again.data.audit_head_path.exists(), "opening alone must not bless the log"
        again.change_settings({"embargo.on": False}, actor=ADMIN)
        report = again.verify_audit()
        assert report and report.warning is None
        assert again.data.audit_head_path.exists()
    finally:
        again.close()


def test_verify_audit_tampered_head_file_does_not_check(node: Node) -> None:
    node.change_settings({"embargo.on": True}, actor=ADMIN)
    path = node.data.audit_head_path
    path.write_bytes(path.read_bytes().replace(b'"seq":2', b'"seq":9'))
    report = node.verify_audit()
    assert not report
    assert "not signed by this node's key" in (report.problem or "")
    path.write_bytes(b"{not json")
    damaged = node.verify_audit()
    assert not damaged and "damaged" in (damaged.problem or "")


# -- votes from the command line: only with the member's own token -------------------------


def _open_for_votes(node: Node) -> tuple[int, str, str]:
    """A proposal, and the tokens of a member (ben) and of an admin (ada) who may vote on it."""
    _, ben = make_member(node, "ben")
    _, ada = make_member(node, "ada", admin=True)
    make_member(node, "cai")
    make_member(node, "dee")
    proposal = node.propose({"defaults.license": "CC0-1.0"}, reason="simpler reuse", actor=ADMIN)
    return proposal.id, ben, ada


def _votes(node: Node) -> list[tuple[str, str]]:
    return node.store.read(
        lambda c: c.execute(
            "SELECT m.name, v.choice FROM votes v JOIN members m ON m.id = v.member_id ORDER BY m.name"
        ).fetchall()
    )


def test_vote_command_as_another_member_without_their_token_is_refused(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    proposal, _, _ = _open_for_votes(node)
    # An admin naming a member is not that member's vote: a usage error.
    assert cli.main(["vote", str(node.data.root), str(proposal), "yes", "--as", "ben"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert _votes(node) == []
    assert "vote.cast" not in _actions(node)


def _http_client(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the command line's HTTP client at the node's app, in this process."""

    from coop.node import client as node_client

    real = node_client.NodeClient
    test_client: TestClient[Any] = TestClient(create_app(node, background=False))

    class InProcess(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            return test_client._transport.handle_request(request)

    def client(base_url: str, token: str, **kwargs: Any) -> node_client.NodeClient:
        return real(base_url, token, transport=InProcess(), **kwargs)

    monkeypatch.setattr(node_client, "NodeClient", client)


def test_vote_command_with_the_members_own_token_records_their_vote(
    node: Node, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    proposal, ben, ada = _open_for_votes(node)
    _http_client(node, monkeypatch)
    url = "http://testserver.local"
    assert cli.main(["vote", str(proposal), "no", "--node", url, "--token", ben]) == 0
    assert f"proposal {proposal} [open]" in capsys.readouterr().out
    # The admin's own token casts the admin's own vote, never anyone else's.
    assert cli.main(["vote", str(proposal), "yes", "--node", url, "--token", ada, "--json"]) == 0
    assert _votes(node) == [("ada", "yes"), ("ben", "no")]
    cast = [(e.actor, e.payload) for e in node.store.read(audit_log.audit_entries) if e.action == "vote.cast"]
    assert cast == [
        ("ben", {"proposal": proposal, "choice": "no"}),
        ("ada", {"proposal": proposal, "choice": "yes"}),
    ]
    assert cli.main(["vote", str(proposal), "yes", "--node", url, "--token", "coop_not-a-token"]) == 5
    assert _votes(node) == [("ada", "yes"), ("ben", "no")]
