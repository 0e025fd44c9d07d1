"""Issue 11, hostile-peer review findings 2 and 3: a slow or greedy peer costs one bounded slot.

A real node (in process, real HTTP transport) gossips with fake peers on 127.0.0.1:

* one drips every answer in pieces, each answer well within the per-request deadline: the
  exchange ends at the exchange budget with a clear ``last_error``, and a quick peer in the
  same round is unaffected;
* one always claims, in its digest, to hold nothing: what is pushed to it is counted on its
  side and stays bounded across rounds (a back-off), each push body within the push cap.
"""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from coop.federation import protocol
from coop.federation.gossip import Want
from coop.federation.protocol import MAX_PUSH_BYTES, MAX_PUSHES, PushMemo
from coop.governance import public_key
from coop.node.runtime import Node

from factories import make_node
from nodeproc import free_port

pytestmark = pytest.mark.integration

_ANSWERS = {
    "summary": b'{"summary":"' + b"0" * 64 + b'"}',
    "digest": b'{"digest":{}}',  # "I hold nothing": always behind
    "manifests": b'{"manifests":[]}',
    "push": b'{"accepted":0,"duplicate":0,"equivocation":0,"rejected":[]}',
    "records": b'{"records":{},"refused":[]}',
}


class _FakePeer(socketserver.ThreadingTCPServer):
    """Answers every protocol step (without checking signatures), optionally dripping each
    answer in ``pieces`` parts ``pause`` seconds apart; records (step, body size) per request."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *, pieces: int = 1, pause: float = 0.0) -> None:
        super().__init__(("127.0.0.1", free_port()), _FakeHandler)
        self.pieces, self.pause = pieces, pause
        self.seen: list[tuple[str, int]] = []
        self.node_id = ""  # set when pinned

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def pushes(self) -> list[int]:
        return [size for step, size in self.seen if step == "push"]


class _FakeHandler(socketserver.StreamRequestHandler):
    server: _FakePeer

    def handle(self) -> None:
        self.request.settimeout(10)
        try:
            request_line = self.rfile.readline().decode("latin-1")
            headers: dict[str, str] = {}
            for _ in range(100):
                line = self.rfile.readline().decode("latin-1").rstrip("\r\n")
                if not line:
                    break
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = self.rfile.read(int(headers.get("content-length", "0")))
            step = request_line.split(" ")[1].rsplit("/", 1)[-1]
            self.server.seen.append((step, len(body)))
            # A step it does not know (``reconcile``) is answered 404, as by an older node.
            answer = _ANSWERS.get(step, b'{"title":"no protocol step"}')
            status = b"200 OK" if step in _ANSWERS else b"404 Not Found"
            whole = (
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Type: application/json\r\nConnection: close\r\n"
                + f"Content-Length: {len(answer)}\r\n\r\n".encode()
                + answer
            )
            step_size = -(-len(whole) // self.server.pieces)
            for start in range(0, len(whole), step_size):
                self.wfile.write(whole[start : start + step_size])
                self.wfile.flush()
                if start + step_size < len(whole):
                    time.sleep(self.server.pause)
        except OSError:
            pass  # the node gave up on this answer: what it should do at its budget


def _serve(peer: _FakePeer) -> threading.Thread:
    thread = threading.Thread(target=peer.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path, "Budget")
    try:
        yield node
    finally:
        node.close()


@pytest.fixture
def peers() -> Iterator[list[_FakePeer]]:
    made: list[_FakePeer] = []
    yield made
    for peer in made:
        peer.shutdown()
        peer.server_close()


def _federation(node: Node, **values: Any) -> None:
    config: Any = node.config
    node.config = msgspec.structs.replace(
        config, federation=msgspec.structs.replace(config.federation, **values)
    )


def _add(node: Node, peers: list[_FakePeer], peer: _FakePeer, name: str) -> _FakePeer:
    peers.append(peer)
    _serve(peer)
    peer.node_id = public_key(bytes([len(peers)] * 32)).hex()
    node.federation.add_peer(peer.url, peer.node_id, name=name, actor="test")
    return peer


def test_gossip_peer_dripping_within_each_deadline_ends_at_the_exchange_budget(
    node: Node, peers: list[_FakePeer]
) -> None:
    # Every answer takes ~1.2 s, far under the 8 s per-request deadline: only a budget over
    # the whole exchange (summary, digest, push...) stops it, here at 2 s.
    _federation(node, request_timeout_seconds=8.0, exchange_budget_seconds=2.0)
    slow = _add(node, peers, _FakePeer(pieces=4, pause=0.4), "slow")
    quick = _add(node, peers, _FakePeer(), "quick")
    node.federation.issue(force=True)

    reports = node.federation.gossip_round(every_peer=True)

    by_peer = {r.peer: r for r in reports}
    assert by_peer[slow.url].error is not None and "budget" in by_peer[slow.url].error, by_peer[slow.url]
    assert by_peer[quick.url].error is None, by_peer[quick.url]
    assert [step for step, _ in quick.seen][:3] == ["summary", "digest", "push"], quick.seen
    shown = {p.node_id: p for p in node.federation.peers()}
    error = shown[slow.node_id].last_error
    assert error is not None and "2 s budget" in error, error
    assert shown[quick.node_id].last_error is None


def test_gossip_peer_always_claiming_an_old_head_gets_bounded_pushes(
    node: Node, peers: list[_FakePeer]
) -> None:
    greedy = _add(node, peers, _FakePeer(), "greedy")
    for _ in range(6):
        node.federation.issue(force=True)

    rounds = 20
    for _ in range(rounds):
        reports = node.federation.gossip_round(every_peer=True)
        assert [r.error for r in reports] == [None], reports

    pushes = greedy.pushes()
    # Once pushed, the same manifests wait for the digest to advance: a back-off that doubles
    # (exchanges 1, 3, 6, 11, 20 of 20), not one push of the whole chain every round.
    assert 1 <= len(pushes) <= 6, pushes
    assert all(size <= MAX_PUSH_BYTES for size in pushes), pushes
    assert len([step for step, _ in greedy.seen if step == "summary"]) == rounds


def test_gossip_push_is_split_into_bodies_within_the_push_cap(
    node: Node, peers: list[_FakePeer], monkeypatch: pytest.MonkeyPatch
) -> None:
    greedy = _add(node, peers, _FakePeer(), "greedy")
    for _ in range(6):
        node.federation.issue(force=True)
    chain = node.federation.store.chain_after(node.identity.node_id, 0, 100)
    assert len(chain) == 6
    cap = max(len(e) for e in chain) * 2 + 64  # two manifests a body at most
    monkeypatch.setattr(protocol, "MAX_PUSH_BYTES", cap)

    reports = node.federation.gossip_round(every_peer=True)

    assert reports[0].error is None, reports
    pushes = greedy.pushes()
    assert 2 <= len(pushes) <= MAX_PUSHES, pushes
    assert all(size <= cap for size in pushes), (pushes, cap)


def test_push_memo_holds_a_peer_that_does_not_advance_and_resets_when_it_does() -> None:
    origin = "a" * 64
    memo = PushMemo()
    behind = Want(origin=origin, after=0)
    assert not memo.held(behind)
    memo.pushed(behind)
    assert memo.held(behind)  # skipped once
    assert not memo.held(behind)
    memo.pushed(behind)  # still behind: the back-off doubles
    assert [memo.held(behind) for _ in range(3)] == [True, True, False]
    ahead = Want(origin=origin, after=3)
    assert not memo.held(ahead)  # its digest advanced: push the rest at once
    memo.pushed(ahead)
    assert [memo.held(ahead) for _ in range(2)] == [True, False]
