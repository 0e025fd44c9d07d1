"""Issue 11 items 16 and 19: persisted nonces, and refused pushes and requests leave a bounded trace."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from coop.federation import RequestAuthError, sign_request
from coop.node.peering.nonces import SqliteReplayCache
from coop.node.peering.refusals import KEPT, PER_PEER, Refusal, recent_refusals, record_refusal
from coop.node.runtime import Node

from factories import make_node


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[tuple[Node, Node, Node]]:
    """A and B pinned each other; C is a co-op A never pinned."""
    a, b, c = make_node(tmp_path, "A"), make_node(tmp_path, "B"), make_node(tmp_path, "C")
    try:
        a.federation.add_peer("http://127.0.0.1:9/b", b.identity.node_id, name="b", actor="test")
        b.federation.add_peer("http://127.0.0.1:9/a", a.identity.node_id, name="a", actor="test")
        yield a, b, c
    finally:
        for node in (a, b, c):
            node.close()


def _post(to: Node, by: Node, step: str, body: bytes) -> bytes:
    url = to.config.node.public_url.rstrip("/") + f"/federation/v1/{step}"
    headers = sign_request(
        "POST", url, body, signer=by.signer, now=by.now(), nonce=msgspec.json.encode(step).hex() * 2
    )
    return to.federation.handle(step, "POST", url, headers, body, ip="127.0.0.9", user_agent="test")


def test_push_of_a_refused_manifest_is_kept_in_the_security_log_and_peers_list(
    trio: tuple[Node, Node, Node],
) -> None:
    a, b, c = trio
    c.federation.issue(force=True)
    stranger = c.federation.store.chain_after(c.identity.node_id, 0, 10)
    body = b'{"manifests":[' + b",".join(stranger) + b"]}"
    answer = msgspec.json.decode(_post(a, b, "push", body))
    assert answer["rejected"] == ["unknown_key"]
    (peer,) = a.federation.peers()
    # Another co-op's manifest relayed by b: b did nothing wrong, so it is not booked under b ...
    assert peer.last_error is None and peer.refused == ()
    # ... but the security log keeps it, under no peer.
    assert [(r.step, r.reason, r.node_id) for r in a.store.read(recent_refusals)] == [
        ("push", "unknown_key", None)
    ]
    actions = a.store.read(lambda conn: [r[0] for r in conn.execute("SELECT action FROM security_events")])
    assert "peer.refused:unknown_key" in actions


def test_refused_request_is_kept_with_the_key_it_claimed(trio: tuple[Node, Node, Node]) -> None:
    a, _, c = trio
    with pytest.raises(RequestAuthError):
        _post(a, c, "summary", b'{"summary":"' + b"0" * 64 + b'"}')
    (refusal,) = a.store.read(recent_refusals)
    assert refusal.keyid == c.identity.node_id
    assert refusal.node_id is None
    assert refusal.reason == "unauthenticated"


def test_refusals_are_bounded_per_peer_and_in_all(trio: tuple[Node, Node, Node]) -> None:
    a, b, _ = trio
    peer = b.identity.node_id

    def many(n: int, node_id: str | None) -> None:
        def write(conn: sqlite3.Connection) -> None:
            for i in range(n):
                refusal = Refusal(at=i, step="push", reason="bad_signature", detail=f"#{i}", node_id=node_id)
                record_refusal(conn, refusal)

        a.store.write(write)

    many(PER_PEER + 15, peer)
    kept = a.store.read(lambda conn: recent_refusals(conn, peer, limit=10_000))
    assert len(kept) == PER_PEER
    assert kept[0].detail == f"#{PER_PEER + 14}"  # newest first, oldest dropped
    many(KEPT + 50, None)
    (total,) = a.store.read(lambda conn: conn.execute("SELECT count(*) FROM peer_refusals").fetchone())
    assert total == KEPT


def test_replay_cache_in_the_database_remembers_until_expiry(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    try:
        cache = SqliteReplayCache(node.store)
        assert not cache.seen("n" * 20, expires=200, now=100)
        assert cache.seen("n" * 20, expires=200, now=150)
        # A second cache over the same database (a restart) still knows it.
        assert SqliteReplayCache(node.store).seen("n" * 20, expires=200, now=160)
        # Expired: forgotten, and purged as requests come.
        assert not cache.seen("n" * 20, expires=400, now=300)
        small = SqliteReplayCache(node.store, max_size=10, purge_every=1)
        for i in range(30):
            small.seen(f"nonce-{i:04d}-padding", expires=1000 + i, now=500)
        (count,) = node.store.read(lambda conn: conn.execute("SELECT count(*) FROM peer_nonces").fetchone())
        assert count <= 11
    finally:
        node.close()
