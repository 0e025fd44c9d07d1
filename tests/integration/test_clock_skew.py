"""Issue 11 item 20: two real nodes, one under a shifted clock (Debian's libfaketime).

Four minutes apart they still federate, and each shows the offset; twenty minutes apart every
exchange is refused, and the refusal says by how much the clocks differ.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from coop.governance.signing import Signer

from harness import add_member, bearer, chat_text, code_word, init_node
from nodeproc import NodeProcess, coop, free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("faketime") is None, reason="needs faketime (Debian package faketime)"),
]


def _wait(check: Callable[[], Any], what: str, within: float = 90.0) -> Any:
    """Poll until ``check()`` is truthy (a bounded wait for gossip, not a timing assertion)."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.TransportError, KeyError, AssertionError) as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"never {what}: {last}")


def _peer(root: Path, node_id: str) -> dict[str, Any]:
    peers = json.loads(coop("peers", "list", str(root), "--json").stdout)
    return next(p for p in peers if p["node_id"] == node_id)


class Pair:
    def __init__(self, tmp_path: Path) -> None:
        self.roots: dict[str, Path] = {}
        self.ports: dict[str, int] = {}
        self.ids: dict[str, str] = {}
        for name in ("a", "b"):
            port = free_port()
            self.ports[name] = port
            self.roots[name] = init_node(
                tmp_path / name,
                node={"public_url": f"http://127.0.0.1:{port}"},
                federation={"interval_seconds": 0.5, "fanout": 1},
                pipeline={"interval_seconds": 0.5},
                rate_limit={"per_token_burst": 10_000, "per_ip_burst": 10_000},
            )
            self.ids[name] = json.loads(coop("identity", "show", str(self.roots[name]), "--json").stdout)[
                "node_id"
            ]
        for name, other in (("a", "b"), ("b", "a")):
            url = f"http://127.0.0.1:{self.ports[other]}"
            coop("peers", "add", str(self.roots[name]), url, "--key", self.ids[other])
        self.token = add_member(self.roots["a"], "ada", admin=True)
        self.nodes: dict[str, NodeProcess] = {}

    def start(self, name: str, shift: str | None = None) -> NodeProcess:
        wrapper = ("faketime", "-f", shift) if shift else ()
        node = NodeProcess(self.roots[name], port=self.ports[name], wrapper=wrapper).start()
        self.nodes[name] = node
        return node

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    p = Pair(tmp_path)
    try:
        yield p
    finally:
        p.stop()


def _share_and_release(pair: Pair) -> str:
    with httpx.Client(base_url=pair.nodes["a"].url, headers=bearer(pair.token), timeout=30) as admin:
        body = {"label": "good", "consent": True, "content": chat_text(code_word()), "scope": "public"}
        response = admin.post("/api/v1/contributions", json=body)
        assert response.status_code == 201, response.text
        uid = str(response.json()["uid"])
        assert admin.post("/api/v1/admin/process").status_code == 200
        _wait(
            lambda: admin.get(f"/api/v1/contributions/{uid}").json()["contribution"]["state"] == "accepted",
            "the record accepted",
        )
        assert admin.post("/api/v1/admin/releases").status_code == 201
    return uid


def test_clock_four_minutes_ahead_still_federates_and_the_offset_is_shown(pair: Pair) -> None:
    pair.start("a")
    b = pair.start("b", "+240s")
    uid = _share_and_release(pair)
    a_id, b_id = pair.ids["a"], pair.ids["b"]

    def mirrored() -> bool:
        rows = httpx.get(f"{b.url}/api/v1/federation/origins/{a_id}/records", timeout=10).json()
        return any(r["uid"] == uid for r in rows)

    _wait(mirrored, "b (4 minutes ahead) mirrored a's record")
    # a sees b's clock 240 s ahead of its own (a's minus b's: -240), b sees a's behind (+240).
    seen_by_a = _wait(lambda: _peer(pair.roots["a"], b_id)["clock_skew"], "a measured b's clock")
    seen_by_b = _wait(lambda: _peer(pair.roots["b"], a_id)["clock_skew"], "b measured a's clock")
    assert abs(seen_by_a + 240) <= 5, seen_by_a
    assert abs(seen_by_b - 240) <= 5, seen_by_b
    listed = coop("peers", "list", str(pair.roots["b"])).stdout
    assert "clock skew \u2248 +2" in listed, listed
    health = httpx.get(f"{b.url}/healthz", timeout=10).json()
    assert health["clock_skew"][a_id].startswith("clock skew \u2248 +2"), health


def test_clock_twenty_minutes_ahead_is_refused_with_the_offset_in_peers_list(pair: Pair) -> None:
    pair.start("a")
    pair.start("b", "+1200s")
    a_id, b_id = pair.ids["a"], pair.ids["b"]

    # b's requests reach a signed 20 minutes in a's future: refused, with the measured offset.
    def refused_at_a() -> dict[str, Any] | None:
        peer = _peer(pair.roots["a"], b_id)
        return peer if any(r["reason"] == "clock_skew" for r in peer["refused"]) else None

    peer = _wait(refused_at_a, "a refused b's requests for time")
    assert abs(peer["clock_skew"] + 1200) <= 5, peer

    # b's own view: a answered with problem details naming the offset (b's clock minus a's).
    def error_at_b() -> str | None:
        error = _peer(pair.roots["b"], a_id)["last_error"]
        return error if error and "clock skew" in error else None

    error = _wait(error_at_b, "b recorded why a refused it")
    assert "answered 401" in error and "clock skew \u2248 +1" in error, error
    listed = coop("peers", "list", str(pair.roots["b"])).stdout
    assert "clock skew \u2248 +1" in listed, listed
    # The refusal itself is problem details with the reason and the offset.
    from coop.federation import sign_request
    from coop.node.storage.datadir import DataDir

    url = f"{pair.nodes['a'].url}/federation/v1/summary"
    body = json.dumps({"summary": "0" * 64}).encode()
    seed = bytes(DataDir(pair.roots["b"]).signing_key())
    headers = sign_request(
        "POST", url, body, signer=Signer(seed), now=int(time.time()) + 1200, nonce=code_word("nonce")
    )
    refused = httpx.post(url, content=body, headers={"Content-Type": "application/json", **headers})
    assert refused.status_code == 401
    problem = refused.json()
    assert problem["reason"] == "clock_skew"
    assert abs(problem["clock_offset_seconds"] - 1200) <= 5, problem
