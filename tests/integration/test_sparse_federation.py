"""Eight real nodes with sparse pins (a ring plus one random pin each) and one federation roster:
a public record released on any node reaches every node, through peers that never pinned its origin."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet import Fleet, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 8


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    seed = secrets.randbits(32)
    print(f"sparse federation seed {seed}")
    fleet = Fleet(tmp_path, N, seed=seed, extra=1, interval=0.5, fanout=2, name="sparse")
    try:
        fleet.init(admins=range(N))
        fleet.roster("sparse", threshold=1)
        fleet.start()
        yield fleet
    finally:
        fleet.close()


def test_sparse_federation_record_from_a_random_node_reaches_every_member(fleet: Fleet) -> None:
    origin = fleet.rng.randrange(N)
    # Some node neither pins the origin nor is pinned by it: only relaying can bring it the record.
    strangers = {
        i for i in range(N) if i != origin and origin not in fleet.pins[i] and i not in fleet.pins[origin]
    }
    assert strangers, fleet.pins
    uid = fleet.release_public(origin, f"sparse{secrets.token_hex(6)}")
    want = set(range(N)) - {origin}
    wait_until(
        lambda: fleet.holders(uid) >= want, f"every node held {uid} from node {origin}", within=75, every=0.5
    )
    assert fleet.holders(uid) >= strangers
