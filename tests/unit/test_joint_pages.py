"""Joint actions on the co-op's own pages (issue 15): what a binding joint embargo or
evaluation-only holds is not shown.

A co-op bound by a joint embargo on a tag: its released record with that tag leaves /browse
(rows, count, filter choices), a search, its /browse/{uid} page (404), the leaderboards and the
static site's browser; when the action ends it shows again (the catalogue keeps it).  A co-op the
action names but that did not sign it is unaffected.  A joint freeze, like the co-op's own
quality freeze, leaves the pages be; evaluation-only hides records created since its start.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from coop.governance import Embargo, JointRules, JointSelector, License
from coop.node.collective.settings import Actor
from coop.node.http.app import create_app
from coop.node.releases import catalog
from coop.node.releases.catalog import SearchFilters
from coop.node.runtime import Node
from coop.node.web.static_site import build_site

from factories import contribute, make_member, make_node, process

ADMIN = Actor("ada", admin=True)
HTML = {"Accept": "text/html"}
DAY = 86_400
HELD_TAG = "secretbrew"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    """Two co-ops that pinned each other: A and B."""
    a, b = make_node(tmp_path, "A"), make_node(tmp_path, "B")
    try:
        for node, other in ((a, b), (b, a)):
            other_id = other.identity.node_id
            node.federation.add_peer(f"http://127.0.0.1:9/{other_id[:8]}", other_id, name=None, actor="test")
        yield a, b
    finally:
        a.close()
        b.close()


def _share(source: Node, target: Node) -> None:
    actions, statements = source.federation.joint.book.items_for(target.federation.joint.book.digest())
    target.federation.joint.book.receive(actions, statements)


def _embargo_signed_by_a(a: Node, b: Node) -> str:
    """A joint embargo on HELD_TAG naming A and B, k = 1, signed by A's admin alone: it binds A
    (not B, which did not sign).  Both hold it.  Returns its id."""
    view, proposal = a.federation.joint.propose(
        kind="embargo",
        reason="a joint embargo on a tag",
        threshold=1,
        coops=[a.identity.node_id, b.identity.node_id],
        actor=ADMIN,
        selector=JointSelector(tags=(HELD_TAG,)),
        ends_at=a.now() + DAY,
    )
    assert proposal is None  # the embargo rule lets an admin act alone
    _share(a, b)
    _share(b, a)
    return view.id


def _released(node: Node) -> tuple[str, str]:
    """Two released, catalogued public records: (free, held), the second tagged HELD_TAG."""
    member, _ = make_member(node, "ines")
    free = contribute(
        node,
        member,
        scope="public",
        text="User: How do I prune apricots?\nAssistant: Prune apricots in late summer.",
        tags=["orchard"],
        language="en",
    )
    held = contribute(
        node,
        member,
        scope="public",
        text="User: How do I brew quinceberry wine?\nAssistant: Quinceberry wine needs patience.",
        tags=[HELD_TAG],
        language="fr",
    )
    process(node)
    node.cut_release()
    node.index_catalog()
    return free, held


def _assert_hidden(client: TestClient, free: str, held: str) -> None:  # type: ignore[type-arg]
    page = client.get("/browse", headers=HTML)
    assert page.status_code == 200
    assert free in page.text and held not in page.text
    assert "1 record found" in page.text, "the held record is not counted"
    for word in (HELD_TAG, "quinceberry"):  # not in the filter choices (its tag, language) either
        assert word not in page.text, word
    assert 'value="fr"' not in page.text
    search = client.get("/browse?q=quinceberry", headers=HTML).text
    assert held not in search and "0 records found" in search
    assert held not in client.get(f"/browse?tag={HELD_TAG}", headers=HTML).text
    assert client.get(f"/browse/{held}", headers=HTML).status_code == 404
    assert client.get(f"/browse/{free}", headers=HTML).status_code == 200
    boards = client.get("/leaderboards", headers=HTML).text
    assert HELD_TAG not in boards and "orchard" in boards


def _assert_shown(client: TestClient, free: str, held: str) -> None:  # type: ignore[type-arg]
    page = client.get("/browse", headers=HTML).text
    assert free in page and held in page and "2 records found" in page
    search = client.get("/browse?q=quinceberry", headers=HTML).text
    assert held in search and "1 record found" in search
    assert client.get(f"/browse/{held}", headers=HTML).status_code == 200
    assert HELD_TAG in client.get("/leaderboards", headers=HTML).text


def test_joint_pages_a_bound_coops_embargoed_record_leaves_its_pages_until_the_action_ends(
    pair: tuple[Node, Node],
) -> None:
    a, b = pair
    free, held = _released(a)
    with TestClient(create_app(a, background=False)) as client:
        _assert_shown(client, free, held)
        action = _embargo_signed_by_a(a, b)
        assert a.federation.joint.rules().embargoes
        _assert_hidden(client, free, held)
        view, proposal = a.federation.joint.end(action, actor=ADMIN)
        assert proposal is None and view.status == "ended"
        assert not a.federation.joint.rules()
        _assert_shown(client, free, held)


def test_joint_pages_a_coop_that_did_not_sign_is_unaffected(pair: tuple[Node, Node]) -> None:
    a, b = pair
    free, held = _released(b)
    _embargo_signed_by_a(a, b)
    assert a.federation.joint.rules() and not b.federation.joint.rules()
    with TestClient(create_app(b, background=False)) as client:
        _assert_shown(client, free, held)


def test_joint_pages_static_site_leaves_out_what_binds(pair: tuple[Node, Node], tmp_path: Path) -> None:
    a, b = pair
    free, held = _released(a)
    _embargo_signed_by_a(a, b)
    out = tmp_path / "site"
    build_site(a, out, node_url="http://127.0.0.1:9")
    listed = {row["uid"] for row in json.loads((out / "browse" / "index.json").read_text())}
    assert listed == {free}
    assert not (out / "browse" / held).exists() and (out / "browse" / free / "index.html").is_file()
    assert HELD_TAG not in (out / "leaderboards" / "index.html").read_text()
    # The release files already published stay: a joint action cannot undo past licences.
    data = "".join(p.read_text() for p in (out / "releases").rglob("data.jsonl"))
    assert held in data


def test_joint_pages_catalogue_readers_under_freeze_and_eval_only(pair: tuple[Node, Node]) -> None:
    """A joint freeze, like the co-op's own quality freeze, hides nothing of the pages;
    evaluation-only hides the records created at or after its start (the older ones stay)."""
    a, _b = pair
    free, held = _released(a)
    created = dict(a.store.read(lambda c: c.execute("SELECT uid, created_at FROM catalog").fetchall()))
    none = Embargo()

    def read(joint: JointRules):  # type: ignore[no-untyped-def]
        def run(c):  # type: ignore[no-untyped-def]
            return (
                {r.uid for r in catalog.search(c, SearchFilters(), embargo=none, joint=joint).rows},
                {r.uid for r in catalog.browse(c, SearchFilters(), embargo=none, joint=joint).rows},
                {u for u in (free, held) if catalog.record(c, u, embargo=none, joint=joint) is not None},
                sum(g + f for _n, g, f in catalog.leaderboards(c, embargo=none, joint=joint).contributors),
            )

        return a.store.read(run)

    assert read(JointRules(freeze=True)) == ({free, held}, {free, held}, {free, held}, 2)
    assert read(JointRules(eval_only_since=min(created.values()))) == (set(), set(), set(), 0)
    latest = max(created.values()) + 1
    assert read(JointRules(eval_only_since=latest)) == ({free, held}, {free, held}, {free, held}, 2)
    (licence,) = a.store.read(lambda c: {str(r[0]) for r in c.execute("SELECT license FROM catalog")})
    by_licence = JointRules(embargoes=(JointSelector(licenses=(License(licence),)),))
    assert read(by_licence) == (set(), set(), set(), 0)
