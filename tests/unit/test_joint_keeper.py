"""Joint actions on a node: this co-op proposes, signs and ends by its own governance, audited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coop.federation.joint import ActionStatus
from coop.governance import Choice, JointSelector, ProposalStatus
from coop.node.collective.audit import audit_entries
from coop.node.collective.settings import Actor
from coop.node.errors import ForbiddenError, InputError, StateError
from coop.node.runtime import Node

from factories import make_member, make_node

ADMIN = Actor("ada", admin=True)
DAY = 86_400


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    a, b = make_node(tmp_path, "A"), make_node(tmp_path, "B")
    try:
        for node, other in ((a, b), (b, a)):
            other_id = other.identity.node_id
            node.federation.add_peer(f"http://127.0.0.1:9/{other_id[:8]}", other_id, name=None, actor="test")
        yield a, b
    finally:
        a.close()
        b.close()


def share(source: Node, target: Node) -> None:
    """``target`` takes what ``source`` holds of joint actions (as the gossip step hands it over)."""
    actions, statements = source.federation.joint.book.items_for(target.federation.joint.book.digest())
    target.federation.joint.book.receive(actions, statements)


def actions(node: Node) -> list[tuple[str, str]]:
    return [(e.action, e.actor) for e in node.store.read(audit_entries) if e.action.startswith("joint.")]


def ids(pair: tuple[Node, Node]) -> list[str]:
    return [n.identity.node_id for n in pair]


def test_admin_proposes_and_signs_a_freeze_alone_and_it_binds_at_threshold_one(
    pair: tuple[Node, Node],
) -> None:
    a, _ = pair
    view, proposal = a.federation.joint.propose(
        kind="freeze", reason="a leak", threshold=1, coops=ids(pair), actor=ADMIN, ends_at=a.now() + DAY
    )
    assert proposal is None  # quality_freeze: an admin may act alone by default
    assert view.status is ActionStatus.ACTIVE
    assert [(c, via) for c, _, via in view.signers] == [(a.identity.node_id, "admin")]
    assert a.federation.joint.bound_here(view)
    assert a.federation.joint.rules().freeze
    assert a.federation.own_state().joint.freeze
    assert actions(a) == [("joint.propose", "ada"), ("joint.sign", "ada"), ("joint.effective", "system")]


def test_threshold_two_binds_only_once_the_second_coop_signs_and_both_end_it(
    pair: tuple[Node, Node],
) -> None:
    a, b = pair
    view, _ = a.federation.joint.propose(
        kind="embargo",
        selector=JointSelector(tags=("health",)),
        reason="a joint embargo on health chats",
        threshold=2,
        coops=ids(pair),
        actor=ADMIN,
        review_at=a.now() + 30 * DAY,
    )
    assert view.status is ActionStatus.PENDING and not a.federation.joint.rules()  # k - 1 binds no one
    share(a, b)
    assert [e for e in actions(b)] == [("joint.receive", "gossip")]
    signed, proposal = b.federation.joint.sign(view.id[:12], actor=ADMIN)  # a unique prefix will do
    assert proposal is None and signed.status is ActionStatus.ACTIVE
    assert b.federation.joint.rules().embargoes == (JointSelector(tags=("health",)),)
    share(b, a)
    a.federation.joint.note()
    assert a.federation.joint.rules().actions == (view.id,)
    with pytest.raises(StateError):
        b.federation.joint.sign(view.id, actor=ADMIN)  # once
    a.federation.joint.end(view.id, actor=ADMIN)
    assert a.federation.joint.view(view.id).status is ActionStatus.ACTIVE  # one end of two signers
    share(a, b)
    ended, _ = b.federation.joint.end(view.id, actor=ADMIN)
    assert ended.status is ActionStatus.ENDED and not b.federation.joint.rules()
    assert ("joint.end", "ada") in actions(b) and ("joint.ended", "system") in actions(b)


def test_a_kind_whose_rule_needs_a_vote_opens_a_proposal_and_signs_when_it_passes(
    pair: tuple[Node, Node],
) -> None:
    a, b = pair
    member, _ = make_member(a)
    view, proposal = a.federation.joint.propose(
        kind="preference",
        ai_use="train-ai=n",
        condition="until the licence terms are renegotiated",
        reason="no training on our chats for now",
        threshold=1,
        coops=ids(pair),
        actor=ADMIN,
        ends_at=a.now() + DAY,
    )
    # defaults: a vote by default; nothing is signed yet
    assert proposal is not None and proposal.changes == {"joint.sign": view.id}
    assert proposal.classes == ["defaults"]
    assert view.status is ActionStatus.PENDING and not a.federation.joint.rules()
    # b's federation is loaded too: the passed proposal finds a's keeper, not b's
    assert b.federation.joint.list() == []
    passed = a.vote(proposal.id, member, Choice.YES)
    assert passed.status is ProposalStatus.PASSED
    now = a.federation.joint.view(view.id)
    assert now.status is ActionStatus.ACTIVE
    assert [via for _, _, via in now.signers] == [f"vote {proposal.id}"]
    assert a.federation.joint.rules().ai_use == "train-ai=n"
    assert ("joint.sign", f"proposal {proposal.id}") in actions(a)
    assert b.federation.joint.list() == []


def test_a_member_who_is_no_admin_opens_a_proposal_even_where_an_admin_may_act_alone(
    pair: tuple[Node, Node],
) -> None:
    a, b = pair
    view, _ = b.federation.joint.propose(
        kind="eval-only",
        reason="evaluation only",
        threshold=2,
        coops=ids(pair),
        actor=ADMIN,
        ends_at=b.now() + DAY,
    )
    share(b, a)
    signed, proposal = a.federation.joint.sign(view.id, actor=Actor("mo", admin=False))
    assert proposal is not None and proposal.classes == ["embargo"]
    assert signed.status is ActionStatus.PENDING


def test_refusals(pair: tuple[Node, Node]) -> None:
    a, _ = pair
    with pytest.raises(ForbiddenError):
        a.federation.joint.propose(
            kind="freeze",
            reason="x",
            threshold=1,
            coops=[],
            actor=Actor("mo", admin=False),
            ends_at=a.now() + 9,
        )
    with pytest.raises(InputError):
        a.federation.joint.propose(kind="freeze", reason="no end", threshold=1, coops=[], actor=ADMIN)
    with pytest.raises(InputError):
        a.federation.joint.propose(
            kind="freeze", reason="too many", threshold=3, coops=ids(pair), actor=ADMIN, ends_at=a.now() + 9
        )
    view, _ = a.federation.joint.propose(
        kind="volume-cap",
        monthly_records=5,
        reason="x",
        threshold=1,
        coops=[],
        actor=ADMIN,
        ends_at=a.now() + 9,
    )
    with pytest.raises(StateError):
        a.federation.joint.end(view.id, actor=ADMIN)  # a vote is to sign it first: nothing to end yet


def test_a_vote_in_a_process_that_never_loaded_the_federation_still_signs(tmp_path: Path) -> None:
    a = make_node(tmp_path, "A")
    root = a.data.root
    try:
        member, _ = make_member(a)
        view, proposal = a.federation.joint.propose(
            kind="volume-cap",
            monthly_records=9,
            reason="pace",
            threshold=1,
            coops=[],
            actor=ADMIN,
            ends_at=a.now() + DAY,
        )
        assert proposal is not None
    finally:
        a.close()
    again = Node(root)  # as `coop vote` would: the federation is not loaded until needed
    try:
        assert "federation" not in again.__dict__
        assert again.vote(proposal.id, member, Choice.YES).status is ProposalStatus.PASSED
        assert again.federation.joint.view(view.id).status is ActionStatus.ACTIVE
        assert again.federation.joint.rules().monthly_records == 9
    finally:
        again.close()
