"""The seeded simulator: loss, partitions that heal, crashes and Byzantine peers; honest nodes agree."""

from __future__ import annotations

import pytest

from coop.federation import Limits, check_manifest
from coop.federation.simulation import Behaviour, Federation, SimNode
from coop.governance import Scope

SEED = 20261122


def _verify_everything_stored(fed: Federation, node: SimNode) -> None:
    """Nothing invalid is ever stored: every kept manifest verifies against the origin's keys."""
    keys = {n.id: n.id for n in fed.nodes}
    keys.update({n.book.store.heads()[n.id].key: n.id for n in fed.nodes if n.id in n.book.store.heads()})
    for (origin, _), items in node.store._manifests.items():
        for data, _ in items.values():
            verified = check_manifest(data, trusted=keys, limits=Limits(max_lifetime=10**9))
            assert verified.manifest.origin == origin


def test_simulation_ten_nodes_lossy_partitioned_then_healed_converge(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print(f"seed {SEED}")
    fed = Federation(10, seed=SEED, loss=0.3)
    for node in fed.nodes[:6]:
        for _ in range(3):
            node.add_record(fed.rng, scope=fed.rng.choice([Scope.PUBLIC, Scope.FEDERATION]))
        node.publish(fed.now)
    fed.partition = {i: 0 if i < 5 else 1 for i in range(10)}
    for _ in range(8):
        fed.step()
    # While partitioned, origins keep publishing: withdrawals (tombstones) on both sides.
    for node in (fed.nodes[1], fed.nodes[5]):
        node.withdraw(next(iter(node.own)), fed.now)
        node.publish(fed.now)
    for _ in range(8):
        fed.step()
    assert not fed.converged()  # the halves cannot see each other
    fed.partition = {}
    rounds = fed.rounds_until_converged(limit=80)
    assert rounds is not None, "never converged after the partition healed"
    # Every honest node holds every origin's latest manifest, and both tombstones.
    for node in fed.honest:
        heads = node.store.heads()
        assert {o: h.seq for o, h in heads.items()} == {n.id: n.seq for n in fed.nodes if n.seq}
        assert node.store.tombstoned(fed.nodes[1].id)
        assert node.store.tombstoned(fed.nodes[5].id)
        _verify_everything_stored(fed, node)


def test_simulation_crashed_node_catches_up_when_it_returns() -> None:
    fed = Federation(8, seed=SEED + 1)
    late = fed.nodes[7]
    late.alive = False
    for node in fed.nodes[:3]:
        node.add_record(fed.rng)
        node.publish(fed.now)
    assert fed.rounds_until_converged(limit=30) is not None
    assert late.store.heads() == {}
    late.alive = True
    assert fed.rounds_until_converged(limit=30) is not None
    assert set(late.store.heads()) == {n.id for n in fed.nodes[:3]}


@pytest.mark.parametrize("behaviour", [Behaviour.DROP, Behaviour.REPLAY, Behaviour.FORGE])
def test_simulation_byzantine_peers_cannot_stop_or_poison_honest_nodes(behaviour: Behaviour) -> None:
    fed = Federation(10, seed=SEED + 2, behaviours={0: behaviour, 1: behaviour})
    for node in fed.nodes[2:6]:
        for _ in range(2):
            node.add_record(fed.rng)
        node.publish(fed.now)
    assert fed.rounds_until_converged(limit=60) is not None
    for node in fed.honest:
        _verify_everything_stored(fed, node)
        for digest, (_, entry, data) in node.store.mirrored().items():
            from coop.governance import sha256_hex

            assert sha256_hex(data) == digest == entry.hash  # forged bytes never kept


def test_simulation_equivocating_origin_is_flagged_forked_everywhere() -> None:
    fed = Federation(10, seed=SEED + 3, behaviours={0: Behaviour.EQUIVOCATE})
    liar = fed.nodes[0]
    liar.add_record(fed.rng)
    liar.publish(fed.now)
    everyone_has_it = lambda: all(liar.id in n.store.heads() for n in fed.honest)  # noqa: E731
    for _ in range(30):
        if everyone_has_it():
            break
        fed.step()
    assert everyone_has_it()
    fed.equivocate(0)
    assert fed.rounds_until_converged(limit=40) is not None
    evidence = {frozenset(h for _, h in n.store.evidence()[liar.id]) for n in fed.honest}
    assert len(evidence) == 1  # every honest node holds the same two manifests as evidence
    assert len(next(iter(evidence))) == 2
    assert all(n.store.heads()[liar.id].forked for n in fed.honest)
    # No winner picked: each node keeps the version it had; nobody switched to the other.
    assert {n.store.heads()[liar.id].hash for n in fed.honest} == set(next(iter(evidence)))
