"""A federation roster among three real nodes: records travel through any connected peer graph.

a founds the federation and admits b (threshold 2 from then on) and c; the pins form a line
(a - b - c: a pins b, b pins a and c, c pins b), so without the roster c never accepts a's
manifests (it did not pin a) and b never relays them to c (a named only its pins).  Part of the
admission of c travels by the roster's own gossip: c learns the roster's next version and the
proposal from b, signs it, and its signature reaches a through b.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from test_federation import Fed

from harness import add_member, init_node
from nodeproc import NodeProcess, coop, free_port

pytestmark = pytest.mark.integration

NAMES = ("a", "b", "c")


def _roster(node: NodeProcess) -> dict[str, object]:
    view = httpx.get(f"{node.url}/api/v1/federation/roster", timeout=10).json()
    return view  # type: ignore[no-any-return]


def _version(node: NodeProcess) -> int:
    roster = _roster(node)["roster"]
    return 0 if roster is None else int(roster["version"])  # type: ignore[index]


def test_federation_roster_carries_a_record_through_a_peer_the_origin_never_pinned(tmp_path: Path) -> None:
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
    for name, others in {"a": ("b",), "b": ("a", "c"), "c": ("b",)}.items():
        for other in others:
            coop("peers", "add", str(roots[name]), nodes[other].url, "--key", ids[other])
    a, b, c = (str(roots[n]) for n in NAMES)
    # Out of band: a founds the federation; b and c trust its first version (on first use).
    coop("federation", "create", a, "--name", "line", "--threshold", "1")
    first = tmp_path / "roster-1.json"
    first.write_text(coop("federation", "export", a).stdout)
    coop("federation", "join", b, str(first))
    coop("federation", "join", c, str(first))
    # b's admission (and k = 2 from then on): a proposes, b signs (its proof of possession).
    admit_b = coop(
        "federation",
        "propose",
        a,
        "--admit",
        ids["b"],
        "--url",
        nodes["b"].url,
        "--name",
        "b",
        "--threshold",
        "2",
    ).stdout.strip()
    proposal = tmp_path / "admit-b.json"
    proposal.write_text(coop("federation", "export", a, "--proposal", admit_b).stdout)
    assert json.loads(coop("federation", "sign", b, str(proposal), "--json").stdout)["adopted"]
    # c's admission: a proposes, b signs it; c will learn version 2 and the proposal by gossip.
    second = tmp_path / "roster-2.json"
    second.write_text(coop("federation", "export", b).stdout)
    coop("federation", "join", a, str(second))
    admit_c = coop(
        "federation", "propose", a, "--admit", ids["c"], "--url", nodes["c"].url, "--name", "c"
    ).stdout.strip()
    proposal = tmp_path / "admit-c.json"
    proposal.write_text(coop("federation", "export", a, "--proposal", admit_c).stdout)
    signed = json.loads(coop("federation", "sign", b, str(proposal), "--json").stdout)
    assert not signed["adopted"] and "signed" in signed["needs"]  # c's own key has not signed
    token = add_member(roots["a"], "ada", admin=True)
    fed = Fed(roots, nodes, ids, token)
    try:
        for node in nodes.values():
            node.start()
        fed.wait(
            lambda: (
                _version(nodes["c"]) == 2
                and any(p["id"] == admit_c for p in _roster(nodes["c"])["proposals"])
            ),  # type: ignore[attr-defined]
            "c learned version 2 and the proposal from b",
        )
        assert json.loads(coop("federation", "sign", c, admit_c, "--json").stdout)["adopted"]
        fed.wait(lambda: all(_version(nodes[n]) == 3 for n in NAMES), "every node trusts version 3")
        public = fed.share("public")
        federation = fed.share("federation")
        fed.process_and_release()
        fed.wait(
            lambda: set(fed.mirrored("c", ids["a"])) == {public, federation},
            "c mirrored a's records through b",
        )
        # a's manifest names the roster instead of listing its federation.
        with closing(sqlite3.connect(f"file:{roots['c'] / 'coop.sqlite3'}?mode=ro", uri=True)) as conn:
            (roster,) = conn.execute(
                "SELECT roster FROM fed_origins WHERE origin = ?", (ids["a"],)
            ).fetchone()
        assert roster == _roster(nodes["a"])["roster"]["federation"]  # type: ignore[index]
    finally:
        fed.admin.close()
        for node in nodes.values():
            node.stop()
