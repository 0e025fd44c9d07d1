"""Three real node processes on 127.0.0.1 federate by gossip: convergence, what travels, kill -9."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from coop.governance.signing import Signer

from harness import add_member, bearer, chat_text, code_word, init_node
from nodeproc import NodeProcess, coop, free_port

pytestmark = pytest.mark.integration

NAMES = ("a", "b", "c")


class Fed:
    def __init__(
        self, roots: dict[str, Path], nodes: dict[str, NodeProcess], ids: dict[str, str], token: str
    ) -> None:
        self.roots = roots
        self.nodes = nodes
        self.ids = ids
        self.admin = httpx.Client(base_url=nodes["a"].url, headers=bearer(token), timeout=30)

    def share(self, scope: str, **extra: Any) -> str:
        body = {"label": "good", "consent": True, "content": chat_text(code_word()), "scope": scope, **extra}
        response = self.admin.post("/api/v1/contributions", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["uid"])

    def process_and_release(self) -> str:
        """Process a's waiting room, then cut: only records accepted before a cut are admitted
        (the background pipeline may hold a batch, so wait until none is left mid-way)."""
        assert self.admin.post("/api/v1/admin/process").status_code == 200
        self.wait(lambda: self.unprocessed() == 0, "a's waiting room emptied")
        response = self.admin.post("/api/v1/admin/releases")
        assert response.status_code == 201, response.text
        return str(response.json()["name"])

    def unprocessed(self) -> int:
        with closing(sqlite3.connect(f"file:{self.roots['a'] / 'coop.sqlite3'}?mode=ro", uri=True)) as conn:
            (n,) = conn.execute(
                "SELECT count(*) FROM contributions WHERE state IN ('waiting_room', 'processing')"
            ).fetchone()
        return int(n)

    def origins(self, name: str) -> dict[str, dict[str, Any]]:
        rows = httpx.get(f"{self.nodes[name].url}/api/v1/federation/origins", timeout=10).json()
        return {row["origin"]: row for row in rows}

    def mirrored(self, name: str, origin: str) -> dict[str, str]:
        """Every record of ``origin`` that ``name`` holds (its database: the public route lists public ones)."""
        with closing(sqlite3.connect(f"file:{self.roots[name] / 'coop.sqlite3'}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT uid, hash FROM mirror_records WHERE origin = ?", (origin,)).fetchall()
        return {str(uid): str(digest) for uid, digest in rows}

    def wait(self, check: Any, what: str, within: float = 60.0) -> None:
        """Poll until ``check()`` holds (a bounded wait for gossip, not a timing assertion)."""
        deadline = time.monotonic() + within
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = check()
                if last:
                    return
            except (httpx.TransportError, KeyError, AssertionError) as exc:
                last = exc
            time.sleep(0.2)
        raise AssertionError(f"never {what}: {last}")


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Fed]:
    roots, nodes, ids = {}, {}, {}
    for name in NAMES:
        port = free_port()
        root = init_node(
            tmp_path / name,
            node={"public_url": f"http://127.0.0.1:{port}"},
            federation={"interval_seconds": 0.5, "fanout": 2},
            pipeline={"interval_seconds": 0.5},
            rate_limit={"per_token_burst": 10_000, "per_ip_burst": 10_000},
        )
        roots[name] = root
        ids[name] = json.loads(coop("identity", "show", str(root), "--json").stdout)["node_id"]
        nodes[name] = NodeProcess(root, port=port)
    for name in NAMES:
        for other in NAMES:
            if other != name:
                coop("peers", "add", str(roots[name]), nodes[other].url, "--key", ids[other])
    token = add_member(roots["a"], "ada", admin=True)
    f = Fed(roots, nodes, ids, token)
    try:
        for node in nodes.values():  # inside the try: a node that fails to start stops the others
            node.start()
        yield f
    finally:
        f.admin.close()
        for node in nodes.values():
            node.stop()


def _same_heads(fed: Fed) -> bool:
    views = [{o: (v["seq"], v["hash"]) for o, v in fed.origins(n).items()} for n in NAMES]
    return all(len(v) == 3 for v in views) and views[0] == views[1] == views[2]


def test_federation_converges_and_mirrors_only_what_may_travel(fed: Fed) -> None:
    public = fed.share("public")
    federation = fed.share("federation")
    home = fed.share("node")
    fed.process_and_release()
    a = fed.ids["a"]
    fed.wait(lambda: _same_heads(fed), "converged on every origin's head")
    for name in ("b", "c"):
        fed.wait(
            lambda n=name: set(fed.mirrored(n, a)) == {public, federation}, f"{name} mirrored a's records"
        )
    # node scope never leaves its node, not even as a hash
    for name in ("b", "c"):
        with closing(sqlite3.connect(f"file:{fed.roots[name] / 'coop.sqlite3'}?mode=ro", uri=True)) as conn:
            listed = {r[0] for r in conn.execute("SELECT uid FROM fed_entries WHERE origin = ?", (a,))}
        assert home not in listed
    # what travels is the exact record: its hash is the one the origin listed
    with closing(sqlite3.connect(f"file:{fed.roots['a'] / 'coop.sqlite3'}?mode=ro", uri=True)) as conn:
        (origin_hash,) = conn.execute(
            "SELECT record_sha256 FROM contributions WHERE uid = ?", (public,)
        ).fetchone()
    assert fed.mirrored("b", a)[public] == origin_hash
    # A federated release on b: a's public record with its origin, never the federation-scope one.
    out = coop("release", str(fed.roots["b"]), "--federated").stdout.strip()
    assert out == "federated/v1"
    rows = []
    for path in (fed.roots["b"] / "releases" / "federated" / "v1").glob("*/data.jsonl"):
        rows += [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["uid"], r["origin"]) for r in rows] == [(public, a)]
    served = httpx.get(f"{fed.nodes['b'].url}/releases/federated/v1", timeout=10).json()
    assert served["origins"] == [a]
    peers = json.loads(coop("peers", "list", str(fed.roots["b"]), "--json").stdout)
    assert {p["node_id"] for p in peers} == {fed.ids["a"], fed.ids["c"]}
    assert all(p["last_contact"] for p in peers)


def test_federation_tombstone_deletes_mirrored_copies_for_good(fed: Fed) -> None:
    keep = fed.share("public")
    gone = fed.share("federation")
    fed.process_and_release()
    a = fed.ids["a"]
    for name in ("b", "c"):
        fed.wait(lambda n=name: gone in fed.mirrored(n, a), f"{name} mirrored the record")
    assert fed.admin.delete(f"/api/v1/contributions/{gone}").status_code == 200
    fed.process_and_release()
    for name in ("b", "c"):
        fed.wait(lambda n=name: set(fed.mirrored(n, a)) == {keep}, f"{name} deleted the withdrawn copy")
        with closing(sqlite3.connect(f"file:{fed.roots[name] / 'coop.sqlite3'}?mode=ro", uri=True)) as conn:
            tomb = conn.execute(
                "SELECT 1 FROM fed_tombstones WHERE origin = ? AND uid = ?", (a, gone)
            ).fetchone()
        assert tomb is not None
    # More rounds never bring it back.
    time.sleep(2)
    assert gone not in fed.mirrored("b", a)
    assert gone not in fed.mirrored("c", a)


def test_federation_embargo_stops_new_records_from_being_mirrored(fed: Fed) -> None:
    before = fed.share("public")
    fed.process_and_release()
    a = fed.ids["a"]
    fed.wait(lambda: before in fed.mirrored("b", a), "b mirrored the first record")
    coop("embargo", "on", str(fed.roots["a"]))
    during = fed.share("public")
    fed.process_and_release()
    fed.wait(lambda: fed.origins("b")[a]["embargo_whole"], "b saw the embargo in a's manifest")
    time.sleep(2)
    assert during not in fed.mirrored("b", a)
    assert during not in fed.mirrored("c", a)
    coop("embargo", "off", str(fed.roots["a"]))
    fed.process_and_release()
    fed.wait(lambda: during in fed.mirrored("b", a), "b mirrored the record once the embargo was lifted")


def test_federation_survives_kill_9_of_a_node_mid_sync(fed: Fed) -> None:
    for _ in range(150):
        fed.share("public")
    fed.process_and_release()
    a = fed.ids["a"]
    # Kill c while it is pulling a's records (some but not all mirrored).
    fed.wait(lambda: len(fed.mirrored("c", a)) > 0 or _same_heads(fed), "c started mirroring", within=60)
    fed.nodes["c"].kill9()
    for _ in range(20):
        fed.share("public")
    fed.process_and_release()
    fed.nodes["c"].start()
    fed.wait(lambda: _same_heads(fed), "converged after c came back", within=90)
    fed.wait(lambda: len(fed.mirrored("c", a)) == 170, "c mirrored every record", within=90)
    with closing(sqlite3.connect(f"file:{fed.roots['c'] / 'coop.sqlite3'}?mode=ro", uri=True)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        chain = [
            r[0]
            for r in conn.execute(
                "SELECT seq FROM fed_manifests WHERE origin = ? AND in_chain = 1 ORDER BY seq", (a,)
            )
        ]
    assert chain == list(range(1, len(chain) + 1))


def test_peer_protocol_refuses_unsigned_replayed_and_altered_requests(fed: Fed) -> None:
    from coop.federation import sign_request
    from coop.node.storage.datadir import DataDir

    url = f"{fed.nodes['a'].url}/federation/v1/summary"
    body = json.dumps({"summary": "0" * 64}).encode()
    unsigned = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    assert unsigned.json()["field"] == "Signature"
    seed = bytes(DataDir(fed.roots["b"]).signing_key())
    headers = sign_request(
        "POST", url, body, signer=Signer(seed), now=int(time.time()), nonce=code_word("nonce")
    )
    first = httpx.post(url, content=body, headers={"Content-Type": "application/json", **headers})
    assert first.status_code == 200, first.text
    replay = httpx.post(url, content=body, headers={"Content-Type": "application/json", **headers})
    assert replay.status_code == 401
    assert "replay" in replay.json()["detail"]
    headers = sign_request(
        "POST", url, body, signer=Signer(seed), now=int(time.time()), nonce=code_word("nonce")
    )
    altered = httpx.post(
        url, content=body.replace(b"0", b"1"), headers={"Content-Type": "application/json", **headers}
    )
    assert altered.status_code == 401
    stranger = sign_request(
        "POST", url, body, signer=Signer(bytes(range(32))), now=int(time.time()), nonce=code_word("nonce")
    )
    assert (
        httpx.post(url, content=body, headers={"Content-Type": "application/json", **stranger}).status_code
        == 401
    )
    # A request b signed for c, replayed at a with c's Host header: signed for another address.
    for_c = f"{fed.nodes['c'].url}/federation/v1/summary"
    headers = sign_request(
        "POST", for_c, body, signer=Signer(seed), now=int(time.time()), nonce=code_word("nonce")
    )
    c_host = for_c.split("/")[2]
    captured = httpx.post(
        url, content=body, headers={"Content-Type": "application/json", "Host": c_host, **headers}
    )
    assert captured.status_code == 401, captured.text
    assert "another address" in captured.json()["detail"]
    # The same, sent to a with a's own Host: the signature covers c's address, not a's.
    headers = sign_request(
        "POST", for_c, body, signer=Signer(seed), now=int(time.time()), nonce=code_word("nonce")
    )
    rewritten = httpx.post(url, content=body, headers={"Content-Type": "application/json", **headers})
    assert rewritten.status_code == 401, rewritten.text


def _origin_row(fed: Fed, name: str, origin: str) -> tuple[int, str | None]:
    """What ``name`` keeps of ``origin``'s latest manifest: its quality freeze and embargo."""
    with closing(sqlite3.connect(f"file:{fed.roots[name] / 'coop.sqlite3'}?mode=ro", uri=True)) as conn:
        row = conn.execute(
            "SELECT quality_freeze, embargo FROM fed_origins WHERE origin = ?", (origin,)
        ).fetchone()
    return (int(row[0]), row[1]) if row else (0, None)


def _listed_at(fed: Fed, name: str, origin: str) -> set[str]:
    with closing(sqlite3.connect(f"file:{fed.roots[name] / 'coop.sqlite3'}?mode=ro", uri=True)) as conn:
        return {r[0] for r in conn.execute("SELECT uid FROM fed_entries WHERE origin = ?", (origin,))}


def _federated_rows(root: Path) -> set[tuple[str, str]]:
    name = coop("release", str(root), "--federated").stdout.strip()
    rows: set[tuple[str, str]] = set()
    for path in (root / "releases" / name).glob("*/data.jsonl"):
        rows |= {
            (json.loads(line)["uid"], json.loads(line)["origin"]) for line in path.read_text().splitlines()
        }
    return rows


def test_federation_follows_the_origins_freeze_and_embargo_set_after_listing(fed: Fed) -> None:
    a = fed.ids["a"]
    before = fed.share("public")
    tagged = fed.share("public", tags=["secret"])
    fed.process_and_release()
    fed.wait(lambda: {before, tagged} <= set(fed.mirrored("b", a)), "b mirrored a's released records")
    # The quality freeze: nothing new is listed, and b stops publishing what it holds of a.
    coop("freeze", "on", str(fed.roots["a"]))
    during = fed.share("public")
    assert fed.admin.post("/api/v1/admin/process").status_code == 200
    assert fed.admin.post("/api/v1/admin/releases").status_code == 409
    fed.wait(lambda: _origin_row(fed, "b", a)[0] == 1, "b saw the freeze in a's manifest")
    assert {uid for uid, origin in _federated_rows(fed.roots["b"]) if origin == a} == set()
    time.sleep(2)
    assert during not in _listed_at(fed, "b", a)
    assert during not in fed.mirrored("b", a)
    coop("freeze", "off", str(fed.roots["a"]))
    fed.process_and_release()
    fed.wait(lambda: during in fed.mirrored("b", a), "b mirrored the record once the freeze was lifted")
    # An embargo by tag set after listing: b stops publishing the tagged record.
    coop("embargo", "on", str(fed.roots["a"]), "--tag", "secret")
    fed.wait(lambda: "secret" in (_origin_row(fed, "b", a)[1] or ""), "b saw the embargo in a's manifest")
    from_a = {uid for uid, origin in _federated_rows(fed.roots["b"]) if origin == a}
    assert from_a == {before, during}


def test_federation_scope_stays_with_the_co_ops_the_origin_pinned(tmp_path: Path) -> None:
    """a pinned b only; b pinned a and c; c pinned b and trusts a's key, but a never pinned c."""
    roots, nodes, ids = {}, {}, {}
    for name in NAMES:
        port = free_port()
        roots[name] = init_node(
            tmp_path / name,
            node={"public_url": f"http://127.0.0.1:{port}"},
            federation={"interval_seconds": 0.5, "fanout": 2},
            pipeline={"interval_seconds": 0.5},
            rate_limit={"per_token_burst": 10_000, "per_ip_burst": 10_000},
        )
        ids[name] = json.loads(coop("identity", "show", str(roots[name]), "--json").stdout)["node_id"]
        nodes[name] = NodeProcess(roots[name], port=port)
    for name, others in {"a": ("b",), "b": ("a", "c"), "c": ("b", "a")}.items():
        for other in others:
            coop("peers", "add", str(roots[name]), nodes[other].url, "--key", ids[other])
    token = add_member(roots["a"], "ada", admin=True)
    fed = Fed(roots, nodes, ids, token)
    try:
        for node in nodes.values():  # inside the try: a node that fails to start stops the others
            node.start()
        a = ids["a"]
        public = fed.share("public")
        federation = fed.share("federation")
        fed.process_and_release()
        fed.wait(lambda: set(fed.mirrored("b", a)) == {public, federation}, "b mirrored both of a's records")
        fed.wait(lambda: ids["b"] in fed.origins("c"), "c gossiped with b")
        time.sleep(2)  # more rounds with b, which holds a's manifests
        # a's signed manifests list its federation-scope record and cannot be trimmed: b relays
        # them only to co-ops a's federation names, so c holds neither listing nor body of a's.
        assert _listed_at(fed, "c", a) == set()
        assert set(fed.mirrored("c", a)) == set()
        assert _federated_rows(roots["b"]) == {(public, a)}
        assert _federated_rows(roots["c"]) == set()
    finally:
        fed.admin.close()
        for node in nodes.values():
            node.stop()
