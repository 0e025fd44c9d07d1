"""Two real nodes: a fork of a's own chain reaches a through its peer; a stops issuing, says why,
and the evidence stays bounded round after round (issue 11, item 18)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from coop.governance.signing import Signer

from harness import add_member, bearer, chat_text, code_word, init_node
from nodeproc import NodeProcess, coop, free_port

pytestmark = pytest.mark.integration


def _wait(check: Callable[[], object], what: str, within: float = 60.0) -> None:
    """Poll until ``check()`` holds (a bounded wait for gossip, not a timing assertion)."""
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return
        except (httpx.TransportError, KeyError, TypeError) as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"never {what}: {last}")


def _rows(root: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(f"file:{root / 'coop.sqlite3'}?mode=ro", uri=True)) as conn:
        return list(conn.execute(sql, args).fetchall())


def test_forked_origin_stops_issuing_and_keeps_bounded_evidence(tmp_path: Path) -> None:
    from coop.federation import GovernanceState, build_manifest, seal_manifest, sign_request
    from coop.governance import Embargo
    from coop.node.storage.datadir import DataDir

    roots, nodes, ids = {}, {}, {}
    for name in ("a", "b"):
        port = free_port()
        roots[name] = init_node(
            tmp_path / name,
            node={"public_url": f"http://127.0.0.1:{port}"},
            federation={"interval_seconds": 0.5, "fanout": 1},
            pipeline={"interval_seconds": 0.5},
            rate_limit={"per_token_burst": 10_000, "per_ip_burst": 10_000},
        )
        ids[name] = json.loads(coop("identity", "show", str(roots[name]), "--json").stdout)["node_id"]
        nodes[name] = NodeProcess(roots[name], port=port)
    coop("peers", "add", str(roots["a"]), nodes["b"].url, "--key", ids["b"])
    coop("peers", "add", str(roots["b"]), nodes["a"].url, "--key", ids["a"])
    token = add_member(roots["a"], "ada", admin=True)
    a, b = ids["a"], ids["b"]
    try:
        for node in nodes.values():  # inside the try: a node that fails to start stops the others
            node.start()
        _wait(lambda: _rows(roots["b"], "SELECT seq FROM fed_origins WHERE origin = ?", a), "b held a's head")
        ((seq,),) = _rows(roots["a"], "SELECT seq FROM fed_origins WHERE origin = ?", a)
        assert isinstance(seq, int)
        # A copy of a's key signs a successor to a history a never had, and b is handed it.
        seed = bytes(DataDir(roots["a"]).signing_key())
        state = GovernanceState(
            settings_digest="0" * 64,
            embargo=Embargo(),
            quality_freeze=False,
            audit_seq=0,
            audit_head="0" * 64,
        )
        forged = seal_manifest(
            build_manifest(
                origin=a,
                key=a,
                coop="a copy of a",
                seq=seq + 1,
                prev="c" * 64,
                issued_at=int(time.time()),
                lifetime=86_400,
                release=None,
                added=[],
                complete={},
                tombstones=[],
                state=state,
            ),
            [Signer(seed)],
        )
        url = f"{nodes['b'].url}/federation/v1/push"
        body = b'{"manifests":[' + forged + b"]}"
        headers = sign_request(
            "POST", url, body, signer=Signer(seed), now=int(time.time()), nonce=code_word("nonce")
        )
        pushed = httpx.post(url, content=body, headers={"Content-Type": "application/json", **headers})
        assert pushed.status_code == 200, pushed.text
        # a learns of the fork from b, then a member's record is released on a: it waits, unlisted.
        _wait(lambda: httpx.get(f"{nodes['a'].url}/healthz").json()["federation_halted"], "a halted")
        admin = httpx.Client(base_url=nodes["a"].url, headers=bearer(token), timeout=30)
        body_json = {"label": "good", "consent": True, "content": chat_text(code_word()), "scope": "public"}
        assert admin.post("/api/v1/contributions", json=body_json).status_code == 201
        assert admin.post("/api/v1/admin/process").status_code == 200
        _wait(
            lambda: _rows(roots["a"], "SELECT 1 FROM contributions WHERE state = 'accepted'"),
            "the record accepted",
        )
        assert admin.post("/api/v1/admin/releases").status_code == 201
        admin.close()
        evidence = "SELECT seq, hash FROM fed_manifests WHERE origin = ? AND evidence = 1"
        before = _rows(roots["a"], evidence, a)
        contacts = "SELECT contacts FROM peers WHERE node_id = ?"
        ((seen,),) = _rows(roots["a"], contacts, b)
        # Rounds go by (a and b gossip twice a second): nothing new is issued or stored.
        _wait(lambda: _rows(roots["a"], contacts, b)[0][0] >= seen + 6, "a few more rounds with b")  # type: ignore[operator]
        after = _rows(roots["a"], evidence, a)
        assert after == before
        assert len(after) <= 2
        assert _rows(roots["a"], "SELECT seq FROM fed_origins WHERE origin = ?", a) == [(seq,)]
        assert not _rows(roots["a"], "SELECT 1 FROM contributions WHERE listed_seq IS NOT NULL")
        halted = httpx.get(f"{nodes['a'].url}/healthz").json()["federation_halted"]
        assert "coop identity rotate" in halted
        listing = coop("peers", "list", str(roots["a"])).stdout
        assert f"FORKED: this node's own manifest chain was forked at sequence {seq + 1}" in listing
    finally:
        for node in nodes.values():
            node.stop()
