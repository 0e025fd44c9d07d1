"""Issue 11 items 14, 16 and 19 against a real node on 127.0.0.1.

14: a peer request is judged on its headers before its body is read: unsigned, unknown-key
and over-cap requests are answered (401, 413, 411) while the client has sent headers only.
16: a captured signed request is refused after the node restarts (nonces are persisted).
19: refused requests leave a trace: the security log, and the peer's entry in `coop peers list`.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from coop.federation import sign_request
from coop.governance import public_key
from coop.governance.signing import Signer

from harness import PROBLEM_JSON, code_word, init_node
from nodeproc import NodeProcess, coop, free_port

pytestmark = pytest.mark.integration

PEER_SEED = bytes(range(1, 33))
STRANGER_SEED = bytes(range(100, 132))
HUGE = 200 * 1024 * 1024


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    port = free_port()
    root = init_node(tmp_path / "a", node={"public_url": f"http://127.0.0.1:{port}"})
    # A pinned peer whose key the test holds; its URL answers nothing (no gossip comes of it).
    coop("peers", "add", str(root), f"http://127.0.0.1:{free_port()}", "--key", public_key(PEER_SEED).hex())
    process = NodeProcess(root, port=port).start()
    try:
        yield process
    finally:
        process.stop()


def _head_only(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Send a request's head and none of its body; return the answer that comes anyway."""
    parts = urlsplit(url)
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        for _ in range(1000):  # bounded: a problem document is a few hundred bytes
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                (
                    int(v)
                    for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
                    if k.lower() == b"content-length"
                ),
                None,
            )
            if length is not None and len(body) >= length:
                break
    assert data, "the node answered nothing before the body was sent"
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    fields = {
        k.strip().lower().decode(): v.strip().decode()
        for k, _, v in (h.partition(b":") for h in head.split(b"\r\n")[1:])
    }
    return status, fields, json.loads(body) if body else {}


def _signed(url: str, seed: bytes, body: bytes = b"{}", *, now: int | None = None) -> dict[str, str]:
    return sign_request(
        "POST",
        url,
        body,
        signer=Signer(seed),
        now=int(time.time()) if now is None else now,
        nonce=code_word("nonce"),
    )


def test_unsigned_huge_post_is_refused_before_its_body_is_sent(node: NodeProcess) -> None:
    url = f"{node.url}/federation/v1/push"
    status, fields, problem = _head_only(
        url, {"Content-Type": "application/json", "Content-Length": str(HUGE)}
    )
    assert status == 401, problem
    assert fields["content-type"].startswith(PROBLEM_JSON)
    assert problem["field"] == "Signature"


def test_unknown_key_huge_post_is_refused_before_its_body_is_sent(node: NodeProcess) -> None:
    url = f"{node.url}/federation/v1/push"
    headers = {"Content-Type": "application/json", "Content-Length": str(HUGE), **_signed(url, STRANGER_SEED)}
    status, _, problem = _head_only(url, headers)
    assert status == 401, problem
    assert "not a pinned peer" in problem["detail"]
    # The refusal is in the security log, with the key it claimed.
    with closing(sqlite3.connect(f"file:{node.root / 'coop.sqlite3'}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT keyid, step, reason FROM peer_refusals").fetchall()
        actions = [r[0] for r in conn.execute("SELECT action FROM security_events")]
    assert (public_key(STRANGER_SEED).hex(), "push", "unauthenticated") in rows
    assert "peer.refused:unauthenticated" in actions


@pytest.mark.parametrize(("step", "length"), [("summary", 4 * 1024 + 1), ("records", 256 * 1024 + 1)])
def test_pinned_peer_over_the_step_cap_is_refused_before_its_body_is_sent(
    node: NodeProcess, step: str, length: int
) -> None:
    url = f"{node.url}/federation/v1/{step}"
    headers = {"Content-Type": "application/json", "Content-Length": str(length), **_signed(url, PEER_SEED)}
    status, _, problem = _head_only(url, headers)
    assert status == 413, problem
    assert problem["field"] == "body"
    assert str(length - 1) in problem["detail"]
    peers = json.loads(coop("peers", "list", str(node.root), "--json").stdout)
    (peer,) = peers
    assert peer["refused"][0]["reason"] == "too_large"
    # The peer's URL answers nothing, so its last_error may already be a failed round: the
    # refusal stays in the listing all the same.
    listed = coop("peers", "list", str(node.root)).stdout
    assert "last refused" in listed and f"{step}: a {step} request is at most" in listed, listed


def test_pinned_peer_without_content_length_is_refused(node: NodeProcess) -> None:
    url = f"{node.url}/federation/v1/summary"
    body = json.dumps({"summary": "0" * 64}).encode()

    def chunks() -> Iterator[bytes]:
        yield body

    response = httpx.post(
        url, content=chunks(), headers={"Content-Type": "application/json", **_signed(url, PEER_SEED, body)}
    )
    assert response.status_code == 411, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)


def test_pinned_peer_within_the_cap_is_answered(node: NodeProcess) -> None:
    url = f"{node.url}/federation/v1/summary"
    body = json.dumps({"summary": "0" * 64}).encode()
    response = httpx.post(
        url, content=body, headers={"Content-Type": "application/json", **_signed(url, PEER_SEED, body)}
    )
    assert response.status_code == 200, response.text
    assert "summary" in response.json()


def test_captured_request_is_refused_after_a_restart(node: NodeProcess) -> None:
    url = f"{node.url}/federation/v1/summary"
    body = json.dumps({"summary": "0" * 64}).encode()
    headers = {"Content-Type": "application/json", **_signed(url, PEER_SEED, body)}
    assert httpx.post(url, content=body, headers=headers).status_code == 200
    node.stop()
    node.start()
    replay = httpx.post(url, content=body, headers=headers)
    assert replay.status_code == 401, replay.text
    assert "replay" in replay.json()["detail"]
    # Kept, but under no peer: whoever captured the peer's request can replay it, so a replay
    # says nothing about the peer (its refusal history and last error stay its own).
    peers = json.loads(coop("peers", "list", str(node.root), "--json").stdout)
    assert not any("replay" in r["detail"] for r in peers[0]["refused"])
    with closing(sqlite3.connect(next(node.root.glob("*.sqlite3")))) as conn, conn:
        kept = conn.execute(
            "SELECT node_id, detail FROM peer_refusals WHERE detail LIKE '%replay%'"
        ).fetchall()
    conn.close()
    assert kept and all(node_id is None for node_id, _ in kept)
