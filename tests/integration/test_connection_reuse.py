"""Two real nodes gossiping idly keep one TCP connection each way, and an idle exchange is small."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet import Fleet, wait_until

pytestmark = pytest.mark.integration

IDLE_PAYLOAD_MAX = 128  # bytes of body per message of an idle exchange, each way


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Fleet]:
    """Two nodes pinning each other, each reached through a counting relay; every round
    (0.5 s, fanout 1) exchanges with the one peer.  Returned once both exchanged a few times
    (converged: what follows is idle) with the relays' counts reset."""
    fleet = Fleet(tmp_path, 2, seed=1, extra=0, interval=0.5, fanout=1, name="pair")
    try:
        fleet.init()
        fleet.start()
        wait_until(lambda: all(r.up.messages >= 4 for r in fleet.relays), "the first exchanges", within=60)
        fleet.reset_traffic()
        yield fleet
    finally:
        fleet.close()


def test_idle_gossip_rounds_reuse_one_connection_per_peer(pair: Fleet) -> None:
    wait_until(lambda: all(r.up.messages >= 8 for r in pair.relays), "eight idle exchanges", within=60)
    for relay in pair.relays:
        assert relay.connections == 0, f"{relay.connections} new connections for {relay.up.messages} requests"
        assert relay.open == 1


def test_idle_exchange_is_one_small_request_each_way(pair: Fleet) -> None:
    wait_until(lambda: all(r.down.messages >= 6 for r in pair.relays), "six idle exchanges", within=60)
    for relay in pair.relays:
        idle = relay.down.messages
        assert max(relay.up.bodies[:idle]) <= IDLE_PAYLOAD_MAX, relay.up.bodies
        assert max(relay.down.bodies[:idle]) <= IDLE_PAYLOAD_MAX, relay.down.bodies
