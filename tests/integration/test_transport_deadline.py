"""Issue 11 item 13: one deadline per exchange, headers included; a slow peer costs one slot.

A hostile peer on 127.0.0.1 answers its status line and headers one byte at a time, far
slower than any per-read timeout notices.  The exchange ends with PeerTimeoutError, and a
gossip round with that peer and a good one completes the good exchange while the slow one
is still dripping.
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

from coop.federation import HttpxTransport, PeerTimeoutError, Request
from coop.governance import public_key
from coop.node.runtime import Node

from factories import make_node
from nodeproc import free_port

pytestmark = pytest.mark.integration

# No body: a deadline checked only while reading the body would never be checked at all.
_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n"


class _Dripper(socketserver.BaseRequestHandler):
    """Reads the request, then sends the response head a byte every 0.3 s (bounded)."""

    server: _DripServer

    def handle(self) -> None:
        self.request.settimeout(5)
        try:
            self.request.recv(65536)
            self.server.started.set()
            for byte in _HEAD:
                self.request.sendall(bytes([byte]))
                time.sleep(0.3)
        except OSError:
            pass
        finally:
            self.server.finished.set()


class _DripServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", free_port()), _Dripper)
        self.started = threading.Event()
        self.finished = threading.Event()


@pytest.fixture
def dripper() -> Iterator[_DripServer]:
    server = _DripServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _url(server: socketserver.TCPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_transport_peer_dripping_its_headers_hits_the_deadline(dripper: _DripServer) -> None:
    # Each byte comes well within the per-read timeout: only an overall deadline stops it.
    transport = HttpxTransport(read_timeout=5)
    try:
        with pytest.raises(PeerTimeoutError):
            transport.send(
                Request(method="POST", url=_url(dripper) + "/x", headers={}, body=b"{}"),
                timeout=2,
                max_bytes=1024,
            )
    finally:
        transport.close()


class _GoodPeer(socketserver.ThreadingTCPServer):
    """A real node's federation protocol over HTTP/1.1, one request per connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, node: Node, slow: _DripServer) -> None:
        super().__init__(("127.0.0.1", free_port()), _GoodHandler)
        self.node = node
        self.slow = slow
        self.steps: list[str] = []
        self.while_slow_dripped: list[bool] = []


class _GoodHandler(socketserver.StreamRequestHandler):
    server: _GoodPeer

    def handle(self) -> None:
        request_line = self.rfile.readline().decode("latin-1")
        headers: dict[str, str] = {}
        for _ in range(100):
            line = self.rfile.readline().decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self.rfile.read(int(headers.get("content-length", "0")))
        # Answer only once the slow peer holds its request: both exchanges are then under way.
        self.server.slow.started.wait(10)
        path = request_line.split(" ")[1]
        step = path.rsplit("/", 1)[-1]
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        answer = self.server.node.federation.handle(
            step, "POST", base + path, headers, body, listening=base + "/"
        )
        self.server.steps.append(step)
        # Did this step finish while the slow peer was still sending its headers?
        self.server.while_slow_dripped.append(
            self.server.slow.started.is_set() and not self.server.slow.finished.is_set()
        )
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(answer)}\r\n\r\n".encode()
            + answer
        )


def test_gossip_round_slow_peer_costs_one_slot_and_the_good_exchange_completes(
    tmp_path: Path, dripper: _DripServer
) -> None:
    node = make_node(tmp_path, "Round")
    other = make_node(tmp_path, "Good")
    good = _GoodPeer(other, dripper)
    thread = threading.Thread(target=good.serve_forever, daemon=True)
    thread.start()
    try:
        config: Any = node.config
        node.config = msgspec.structs.replace(
            config, federation=msgspec.structs.replace(config.federation, request_timeout_seconds=8.0)
        )
        slow_id = public_key(bytes(range(32))).hex()
        # The slow peer first: served one after the other, the good one would wait for it.
        node.federation.add_peer(_url(dripper), slow_id, name="slow", actor="test")
        node.federation.add_peer(_url(good), other.identity.node_id, name="good", actor="test")
        other.federation.add_peer("http://127.0.0.1:9", node.identity.node_id, name=None, actor="test")

        reports = node.federation.gossip_round(every_peer=True)

        assert [r.peer for r in reports] == [_url(dripper), _url(good)]
        slow, fine = reports
        assert slow.error is not None and "did not finish within" in slow.error, slow
        assert fine.error is None, fine
        assert good.steps[0] == "summary" and "push" in good.steps, good.steps
        # The good exchange ran while the slow peer was still dripping its headers.
        assert good.while_slow_dripped[-1], (good.steps, good.while_slow_dripped)
        heads = other.federation.store.heads()
        assert node.identity.node_id in heads  # the good peer got this node's manifest
    finally:
        good.shutdown()
        good.server_close()
        node.close()
        other.close()
