"""The keeper after review: one members' vote at a time on an action, no unknown co-ops named,
and the book's pruning deletes actions with their statements."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coop.node.collective.settings import Actor
from coop.node.errors import InputError, StateError
from coop.node.http.joint import one_answer
from coop.node.runtime import Node

from factories import make_node

ADMIN = Actor("ada", admin=True)
MEMBER = Actor("mo", admin=False)
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


def ids(pair: tuple[Node, Node]) -> list[str]:
    return [n.identity.node_id for n in pair]


def test_an_open_vote_refuses_a_second_decision_and_the_page_says_so(pair: tuple[Node, Node]) -> None:
    a, _ = pair
    keeper = a.federation.joint
    view, proposal = keeper.propose(
        kind="preference",
        ai_use="train-ai=n",
        reason="no training for now",
        threshold=1,
        coops=ids(pair),
        actor=ADMIN,
        ends_at=a.now() + DAY,
    )
    assert proposal is not None  # defaults: a vote by default
    assert keeper.open_vote(view.id) == proposal.id
    assert keeper.open_vote(view.id[:12]) == proposal.id  # a unique prefix will do
    for actor in (ADMIN, MEMBER):
        with pytest.raises(StateError, match=f"members are voting on it: proposal {proposal.id}"):
            keeper.sign(view.id, actor=actor)
    rows = a.store.read(
        lambda c: c.execute("SELECT count(*) FROM proposals WHERE status = 'open'").fetchone()
    )
    assert rows[0] == 1  # no duplicate proposal
    answer = one_answer(a.federation, view.id, own=(a.identity.node_id, "A"))
    assert f"members' vote open: proposal {proposal.id}" in answer.here


def test_no_open_vote_for_an_action_decided_by_an_admin(pair: tuple[Node, Node]) -> None:
    a, _ = pair
    view, proposal = a.federation.joint.propose(
        kind="freeze", reason="a leak", threshold=1, coops=ids(pair), actor=ADMIN, ends_at=a.now() + DAY
    )
    assert proposal is None
    assert a.federation.joint.open_vote(view.id) is None
    assert a.federation.joint.open_vote("f" * 64) is None


def test_propose_refuses_a_coop_this_node_does_not_know(pair: tuple[Node, Node]) -> None:
    a, _ = pair
    stranger = "ab" * 32
    with pytest.raises(InputError, match="unknown co-op abababab") as caught:
        a.federation.joint.propose(
            kind="freeze",
            reason="x",
            threshold=1,
            coops=[ids(pair)[1], stranger],
            actor=ADMIN,
            ends_at=a.now() + DAY,
        )
    assert caught.value.field == "coops[1]"
    assert "pin it (coop peers add) or admit it to the roster first" in caught.value.message
    assert a.federation.joint.list() == []
    # itself and a pinned peer are known
    view, _ = a.federation.joint.propose(
        kind="freeze", reason="x", threshold=1, coops=ids(pair), actor=ADMIN, ends_at=a.now() + DAY
    )
    assert view.action.coops == tuple(sorted(ids(pair)))


def test_drop_actions_deletes_actions_and_their_statements(pair: tuple[Node, Node]) -> None:
    a, _ = pair
    keeper = a.federation.joint
    kept, _ = keeper.propose(
        kind="freeze", reason="kept", threshold=1, coops=ids(pair), actor=ADMIN, ends_at=a.now() + DAY
    )
    gone, _ = keeper.propose(
        kind="eval-only", reason="gone", threshold=1, coops=ids(pair), actor=ADMIN, ends_at=a.now() + DAY
    )
    store = keeper.joints
    marker = store.marker()
    assert store.drop_actions([gone.id, "0" * 64]) == 1
    assert store.drop_actions([]) == 0
    assert store.marker() != marker

    def held(conn):  # type: ignore[no-untyped-def]
        return (
            [r[0] for r in conn.execute("SELECT id FROM joint_actions")],
            sorted({r[0] for r in conn.execute("SELECT action FROM joint_statements")}),
        )

    assert a.store.read(held) == ([kept.id], [kept.id])
    assert [v.id for v in keeper.list()] == [kept.id]


def test_the_books_prune_deletes_through_the_node_store(pair: tuple[Node, Node]) -> None:
    a, _ = pair
    keeper = a.federation.joint
    view, _ = keeper.propose(
        kind="freeze", reason="short", threshold=1, coops=ids(pair), actor=ADMIN, ends_at=a.now() + DAY
    )
    assert keeper.book.prune(now=a.now() + 2 * DAY) == []  # expired: shown a while yet
    assert keeper.book.prune(now=a.now() + 500 * DAY) == [view.id]
    left = a.store.read(
        lambda c: c.execute(
            "SELECT (SELECT count(*) FROM joint_actions), (SELECT count(*) FROM joint_statements)"
        ).fetchone()
    )
    assert tuple(left) == (0, 0)


def test_the_proposer_withdraws_its_pending_action_by_signing_its_end(pair: tuple[Node, Node]) -> None:
    a, b = pair
    view, _ = a.federation.joint.propose(
        kind="freeze", reason="a typo", threshold=2, coops=ids(pair), actor=ADMIN, ends_at=a.now() + DAY
    )
    assert view.status.value == "pending"
    withdrawn, _ = a.federation.joint.end(view.id, actor=ADMIN)
    assert withdrawn.status.value == "withdrawn"
    with pytest.raises(StateError, match="already signed the end"):
        a.federation.joint.end(view.id, actor=ADMIN)
    # A withdrawn action is past: gossip no longer carries it to the other co-op.
    assert not a.federation.book.joint.items_for(b.federation.book.joint.digest())[0]
