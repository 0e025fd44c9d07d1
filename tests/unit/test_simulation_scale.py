"""The simulator at scale: 1,000 nodes that trust a roster and talk to a few peers each.

Records travel from peer to peer (nobody talks to the origin but its few peers), every node's
book holds real manifests and record bytes, and what every node holds alike is shared, so the
memory per node stays small.
"""

from __future__ import annotations

import random
import tracemalloc

import pytest

from coop.federation.simulation import Federation, sparse_talk

SEED = 20261202
N = 1_000
# Rounds for a record to reach every one of 1,000 nodes over a ring plus 2 random peers each
# (about 5 to 8 in practice; the diameter of such a graph is ~log N): generous.
ROUND_LIMIT = 40
# Bytes per node of the whole converged simulation (books, stores, keys, the shared objects):
# ~10-20 KB in practice; a per-node copy of the members or of the world would be far above.
MEMORY_PER_NODE = 64 * 1024


def test_sparse_talk_is_a_ring_plus_random_peers() -> None:
    talk = sparse_talk(50, random.Random(1), extra=2)
    for i, peers in enumerate(talk):
        assert len(peers) == len(set(peers)) == 4
        assert i not in peers
        assert {(i - 1) % 50, (i + 1) % 50} <= set(peers)


def _converge_on_a_record(n: int) -> tuple[Federation, int | None, set[str], int]:
    fed = Federation(n, seed=SEED, roster=True, sparse=2)
    origin_index = random.Random(SEED).randrange(1, n)  # any node, not node 0
    origin = fed.nodes[origin_index]
    hashes = {origin.add_record(fed.rng).hash for _ in range(2)}
    origin.publish(fed.now)
    return fed, fed.rounds_until_converged(limit=ROUND_LIMIT, records=True), hashes, origin_index


@pytest.mark.slow
def test_thousand_nodes_with_a_roster_and_sparse_talk_converge_on_any_nodes_record() -> None:
    fed, rounds, hashes, index = _converge_on_a_record(N)
    origin = fed.nodes[index]
    # One trust mapping for all: no node holds its own copy of the roster's members.
    assert all(node.book.pinned is fed.members for node in fed.nodes)
    assert len(fed.members) == N
    # Nobody but its own few peers ever talks to the origin.
    talks_to_origin = {i for i, peers in enumerate(fed.talk or []) if index in peers}
    assert 2 <= len(talks_to_origin) <= 12
    assert rounds is not None, f"{N} nodes did not converge in {ROUND_LIMIT} rounds"
    assert rounds >= 2  # it had to travel through peers
    for node in fed.nodes:
        assert node.store.heads()[origin.id].seq == origin.seq
        if node is not origin:
            assert hashes <= set(node.store.mirrored()), f"node {node.index} lacks the records"


@pytest.mark.slow
def test_memory_per_node_is_small_and_shared() -> None:
    """A size check (tracemalloc makes the run ~4x slower, hence 200 nodes, not 1,000)."""
    n = 200
    tracemalloc.start()
    try:
        fed, rounds, hashes, _ = _converge_on_a_record(n)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rounds is not None
    assert held / n < MEMORY_PER_NODE, f"{held / n:,.0f} B per node"
    # Every node holds the same envelope and record bytes: one object, not one copy per node.
    copies = {id(data) for node in fed.nodes for _, (_, _, data) in node.store.mirrored().items()}
    assert len(copies) == len(hashes)


def test_manifests_under_a_roster_do_not_list_the_federation() -> None:
    fed = Federation(5, seed=SEED, roster=True, sparse=2)
    node = fed.nodes[3]
    node.add_record(fed.rng)
    node.publish(fed.now)
    assert node.store.heads()[node.id].federation is None
    mesh = Federation(5, seed=SEED)
    mesh.nodes[3].add_record(mesh.rng)
    mesh.nodes[3].publish(mesh.now)
    assert len(mesh.nodes[3].store.heads()[mesh.nodes[3].id].federation or ()) == 4


def test_sticky_loss_ends_an_exchange_at_its_first_lost_message() -> None:
    """The baseline of a protocol without retries: a retry inside the exchange gets nowhere."""
    fed = Federation(4, seed=SEED, loss=0.5, sticky_loss=True)
    node = fed.nodes[0]
    node.add_record(fed.rng)
    node.publish(fed.now)
    reports = [r for _ in range(5) for r in fed.step()]
    assert any(r.error for r in reports)
    # Whatever the protocol retried, no message of a lost exchange got through after the loss.
    assert all(getattr(r, "retries", 0) == 0 or r.error for r in reports)
