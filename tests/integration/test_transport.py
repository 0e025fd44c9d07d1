"""The httpx transport against misbehaving peers on 127.0.0.1: endless, oversized and slow answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from coop.federation import (
    HttpxTransport,
    PeerTimeoutError,
    PeerUnreachableError,
    Request,
    ResponseTooLargeError,
)

from nodeproc import free_port

pytestmark = pytest.mark.integration


class _Peer(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        if self.path == "/endless":
            self.send_response(200)
            self.end_headers()
            chunk = b"x" * 65536
            for _ in range(10_000):  # bounded: 640 MB at most, cut far earlier by the cap
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return
        elif self.path == "/announced":
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
        elif self.path == "/drip":
            self.send_response(200)
            self.end_headers()
            for _ in range(30):  # one byte a second, for at most 30 s
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return
                time.sleep(1)
        else:
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.fixture
def peer() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Peer)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _post(url: str) -> Request:
    return Request(method="POST", url=url, headers={}, body=b"{}")


def test_transport_normal_answer_is_returned_whole(peer: str) -> None:
    transport = HttpxTransport()
    try:
        response = transport.send(_post(peer + "/ok"), timeout=5, max_bytes=1024)
    finally:
        transport.close()
    assert response.status == 200
    assert response.body == b'{"ok": true}'


def test_transport_endless_response_is_aborted_at_the_cap(peer: str) -> None:
    transport = HttpxTransport()
    try:
        with pytest.raises(ResponseTooLargeError):
            transport.send(_post(peer + "/endless"), timeout=30, max_bytes=1_000_000)
    finally:
        transport.close()


def test_transport_oversized_content_length_is_refused_before_reading(peer: str) -> None:
    transport = HttpxTransport()
    try:
        with pytest.raises(ResponseTooLargeError):
            transport.send(_post(peer + "/announced"), timeout=30, max_bytes=1_000_000)
    finally:
        transport.close()


def test_transport_peer_answering_one_byte_a_second_hits_the_deadline(peer: str) -> None:
    transport = HttpxTransport(read_timeout=5)
    try:
        with pytest.raises(PeerTimeoutError):
            transport.send(_post(peer + "/drip"), timeout=3, max_bytes=1_000_000)
    finally:
        transport.close()


def test_transport_closed_port_is_unreachable() -> None:
    transport = HttpxTransport()
    try:
        with pytest.raises(PeerUnreachableError):
            transport.send(_post(f"http://127.0.0.1:{free_port()}/x"), timeout=3, max_bytes=1024)
    finally:
        transport.close()
