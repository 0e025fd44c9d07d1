"""What a joint action binding a co-op does at its exits: listing, pulls, cuts, federated releases,
eval, intake defaults; a co-op that did not sign is unaffected; a peer holding the action stops
re-publishing the bound origin's records it mirrors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coop.governance import Audience, Choice, JointSelector, PolicyError, disclose
from coop.node.collective.settings import Actor
from coop.node.members.accounts import Member
from coop.node.policy import OWN_FACTS, own_row_facts
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process

ADMIN = Actor("ada", admin=True)
DAY = 86_400


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    """Two co-ops that pinned each other: A (the origin) and B (its peer)."""
    a, b = make_node(tmp_path, "A"), make_node(tmp_path, "B")
    try:
        for node, other in ((a, b), (b, a)):
            other_id = other.identity.node_id
            node.federation.add_peer(f"http://127.0.0.1:9/{other_id[:8]}", other_id, name=None, actor="test")
        yield a, b
    finally:
        a.close()
        b.close()


def _share(source: Node, target: Node) -> None:
    actions, statements = source.federation.joint.book.items_for(target.federation.joint.book.digest())
    target.federation.joint.book.receive(actions, statements)


def _bind(
    a: Node, b: Node, kind: str, *, signed_by_a: bool = True, voter: Member | None = None, **terms: Any
) -> str:
    """A joint action of ``kind`` naming A and B, k = 1; A signs it (an admin, or ``voter`` votes
    yes where the kind's rule needs a vote) unless told not to: then B proposes and signs it.
    Both hold it.  Returns its id."""
    proposer = a if signed_by_a else b
    view, proposal = proposer.federation.joint.propose(
        kind=kind,
        reason=f"a joint {kind}",
        threshold=1,
        coops=[a.identity.node_id, b.identity.node_id],
        actor=ADMIN,
        ends_at=proposer.now() + DAY,
        **terms,
    )
    if proposal is not None:  # the kind's rule needs a vote: the co-op's one member votes yes
        assert voter is not None
        proposer.vote(proposal.id, voter, Choice.YES)
    _share(a, b)
    _share(b, a)
    return view.id


def _hash(node: Node, uid: str) -> str:
    row = node.store.read(
        lambda c: c.execute("SELECT record_sha256 FROM contributions WHERE uid = ?", (uid,)).fetchone()
    )
    return str(row[0])


def _receive(origin: Node, peer: Node) -> None:
    chain = origin.federation.store.chain_after(origin.identity.node_id, 0, 1000)
    peer.federation.book.receive(chain, now=origin.now())


def _pull(server: Node, peer: Node) -> set[str]:
    wanted = peer.federation.book.record_wants()
    got, _ = server.federation.fetch([e.hash for _, e in wanted], requester=peer.identity.node_id)
    peer.federation.book.receive_records(wanted, got)
    rows = peer.store.read(lambda c: c.execute("SELECT uid FROM mirror_records").fetchall())
    return {r[0] for r in rows}


def _federated_uids(node: Node) -> set[str]:
    summary = node.cut_federated_release()
    folder = node.data.releases_path / "federated" / summary.name
    return {
        json.loads(line)["uid"]
        for path in folder.glob("*/data.jsonl")
        for line in path.read_text().splitlines()
    }


def _admitted(node: Node) -> set[str]:
    rows = node.store.read(
        lambda c: c.execute("SELECT uid FROM contributions WHERE admitted_in IS NOT NULL").fetchall()
    )
    return {r[0] for r in rows}


def _facts(node: Node, uid: str) -> Any:
    row = node.store.read(
        lambda c: c.execute(f"SELECT {OWN_FACTS} FROM contributions c WHERE c.uid = ?", (uid,)).fetchone()
    )
    return own_row_facts(row)


def test_a_joint_freeze_stops_listing_pulls_cuts_and_the_federated_release(pair: tuple[Node, Node]) -> None:
    a, b = pair
    member, _ = make_member(a)
    before = contribute(a, member, scope="public")
    process(a)
    a.cut_release()
    a.federation.issue()
    _receive(a, b)
    assert _pull(a, b) == {before}
    new = contribute(a, member, scope="federation")
    process(a)
    _bind(a, b, "freeze")
    with pytest.raises(PolicyError, match="joint freeze"):
        a.cut_release()
    assert new not in _admitted(a)
    report = a.federation.issue(force=True)
    assert report is not None and report.added == 0
    found, _ = a.federation.fetch([_hash(a, before)], requester=b.identity.node_id)
    assert found == {}  # not even what was listed before
    assert _federated_uids(a) == set()  # its own released records: not re-published while bound
    assert before not in _federated_uids(b)  # the peer holds the action: the mirror stays in


def test_a_joint_embargo_holds_matching_new_records_and_an_unbound_coop_is_unaffected(
    pair: tuple[Node, Node],
) -> None:
    a, b = pair
    _bind(a, b, "embargo", selector=JointSelector(tags=("health",)), signed_by_a=False)  # B signed
    assert not a.federation.joint.rules() and b.federation.joint.rules()
    member, _ = make_member(a)
    tagged = contribute(a, member, scope="public", tags=["health"])
    process(a)
    a.cut_release()
    assert tagged in _admitted(a)  # A did not sign: nothing binds it
    other, _ = make_member(b)
    held = contribute(b, other, scope="public", tags=["health"])
    free = contribute(b, other, scope="public", tags=["sport"])
    process(b)
    b.cut_release()
    assert _admitted(b) == {free}
    b.federation.issue()
    assert set(a.federation.store.entries(b.identity.node_id)) == set()  # nothing handed yet
    _receive(b, a)
    assert set(a.federation.store.entries(b.identity.node_id)) == {free}
    assert held not in _admitted(b)


def test_eval_only_records_still_answer_eval_but_go_nowhere_else(pair: tuple[Node, Node]) -> None:
    a, b = pair
    _bind(a, b, "eval-only")
    member, _ = make_member(a)
    uid = contribute(a, member, scope="public")
    process(a)
    a.cut_release()
    assert uid not in _admitted(a)
    facts = _facts(a, uid)
    assert facts.created_at is not None
    state = a.federation.own_state()
    assert disclose(facts, state, Audience.EVAL)
    assert not disclose(facts, state, Audience.PEER, requester=b.identity.node_id)
    assert not disclose(facts, state, Audience.PUBLIC)
    assert a.evaluation.joint() == state.joint  # the eval answers read the same rules


def test_a_preference_shift_changes_the_default_ai_use_only_while_in_force(pair: tuple[Node, Node]) -> None:
    a, b = pair
    member, _ = make_member(a)
    usual = a.settings().settings.defaults.ai_use
    first = contribute(a, member)
    action = _bind(a, b, "preference", voter=member, ai_use="train-ai=n", condition="until we say so")
    assert a.intake_defaults().ai_use == "train-ai=n"
    during = contribute(a, member)
    chosen = contribute(a, member, ai_use="train-ai=y")
    _, proposal = a.federation.joint.end(action, actor=ADMIN)  # defaults: the co-op votes on it
    assert proposal is not None and a.intake_defaults().ai_use == "train-ai=n"
    a.vote(proposal.id, member, Choice.YES)
    assert a.intake_defaults().ai_use == usual
    after = contribute(a, member)

    def ai_use(uid: str) -> str:
        row = a.store.read(
            lambda c: c.execute("SELECT ai_use FROM contributions WHERE uid = ?", (uid,)).fetchone()
        )
        return str(row[0])

    assert "train-ai=y" in ai_use(first) and ai_use(after) == ai_use(first)  # the co-op's usual default
    assert ai_use(during) == "train-ai=n"
    assert ai_use(chosen) == "train-ai=y"  # a member's own choice stands
    assert not b.federation.joint.rules()  # b did not sign


def test_a_joint_volume_cap_is_the_smaller_of_the_two(pair: tuple[Node, Node]) -> None:
    a, b = pair
    member, _ = make_member(a)
    _bind(a, b, "volume-cap", voter=member, monthly_records=2)
    uids = [contribute(a, member, scope="public") for _ in range(4)]
    process(a)
    a.cut_release()
    a.cut_release()
    assert _admitted(a) == set(uids[:2])
