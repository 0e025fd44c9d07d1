"""Gated buckets on the live pages (issue 15): a record whose licence is gated is not shown.

Its bucket's files reach only grantees; the node's own pages must not show its records either:
not in /browse (rows, count, filter choices), not found by a search, its /browse/{uid} page a
404, not counted on the leaderboards. Lifting the gate shows it again (the catalogue keeps
it). The /datasets/{name} page lists a gated bucket's files without links and says how to
request access.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from coop.governance import Embargo
from coop.node.collective.settings import Actor
from coop.node.http.app import create_app
from coop.node.releases import catalog
from coop.node.releases.catalog import SearchFilters
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process

ADMIN = Actor("ada", admin=True)
HTML = {"Accept": "text/html"}
SA = "CC-BY-SA-4.0"
OPEN = "CC-BY-4.0"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    made = make_node(tmp_path)
    try:
        yield made
    finally:
        made.close()


def _released(node: Node) -> tuple[str, str]:
    """One open (CC-BY) and one share-alike record, released and catalogued: (open, sa)."""
    member, _ = make_member(node, "ines")
    open_ = contribute(
        node,
        member,
        license=OPEN,
        scope="public",
        text="User: How do I prune apricots?\nAssistant: Prune apricots in late summer.",
        tags=["orchard"],
        language="en",
    )
    sa = contribute(
        node,
        member,
        license=SA,
        scope="public",
        text="User: How do I brew quinceberry wine?\nAssistant: Quinceberry wine needs patience.",
        tags=["secretbrew"],
        language="fr",
    )
    process(node)
    node.cut_release()
    node.index_catalog()
    return open_, sa


def _gate(node: Node, *licences: str) -> None:
    node.change_settings({"access": {"gated": list(licences)}}, actor=ADMIN)


def test_gated_pages_a_gated_record_leaves_browse_search_record_counts_and_boards(node: Node) -> None:
    open_, sa = _released(node)
    _gate(node, SA)
    with TestClient(create_app(node, background=False)) as client:
        page = client.get("/browse", headers=HTML)
        assert page.status_code == 200
        assert open_ in page.text and sa not in page.text
        assert "1 record found" in page.text, "the gated record is not counted"
        # Nothing of it in the filter choices: its licence, tag (nor its words).
        for word in (SA, "secretbrew", "quinceberry"):
            assert word not in page.text, word
        search = client.get("/browse?q=quinceberry", headers=HTML).text
        assert sa not in search and "0 records found" in search
        assert sa not in client.get(f"/browse?license={SA}", headers=HTML).text
        assert sa not in client.get("/browse?tag=secretbrew", headers=HTML).text
        assert client.get(f"/browse/{sa}", headers=HTML).status_code == 404
        assert client.get(f"/browse/{open_}", headers=HTML).status_code == 200
        boards = client.get("/leaderboards", headers=HTML).text
        assert "secretbrew" not in boards and "orchard" in boards


def test_gated_pages_lifting_the_gate_shows_the_record_again(node: Node) -> None:
    _open, sa = _released(node)
    _gate(node, SA)
    with TestClient(create_app(node, background=False)) as client:
        assert client.get(f"/browse/{sa}", headers=HTML).status_code == 404
        _gate(node)
        assert client.get(f"/browse/{sa}", headers=HTML).status_code == 200
        page = client.get("/browse?q=quinceberry", headers=HTML).text
        assert sa in page and "1 record found" in page
        assert "2 records found" in client.get("/browse", headers=HTML).text
        assert "secretbrew" in client.get("/leaderboards", headers=HTML).text


def test_gated_pages_catalogue_readers_hold_back_gated_buckets(node: Node) -> None:
    """Every reader of the catalogue (the live browser's and the static site's) agrees."""
    open_, sa = _released(node)
    gated = frozenset({SA})
    none = Embargo()

    def read(c):  # type: ignore[no-untyped-def]
        return (
            catalog.search(c, SearchFilters(), embargo=none, gated=gated),
            catalog.browse(c, SearchFilters(q="quinceberry"), embargo=none, gated=gated),
            catalog.record(c, sa, embargo=none, gated=gated),
            catalog.facets(c, embargo=none, gated=gated),
            catalog.leaderboards(c, embargo=none, gated=gated),
        )

    found, searched, one, facets, boards = node.store.read(read)
    assert [r.uid for r in found.rows] == [open_] and found.total == 1
    assert searched.rows == [] and searched.total == 0
    assert one is None
    assert facets["license"] == [OPEN] and facets["language"] == ["en"] and facets["tag"] == ["orchard"]
    assert [t for t, _n in boards.tags] == ["orchard"]
    assert sum(good + fail for _name, good, fail in boards.contributors) == 1
    # Without the gate both are there (the catalogue keeps gated records for when it lifts).
    every = node.store.read(lambda c: catalog.search(c, SearchFilters(), embargo=none))
    assert {r.uid for r in every.rows} == {open_, sa}


def test_gated_pages_dataset_page_lists_gated_files_unlinked_and_says_request_access(node: Node) -> None:
    _released(node)
    with TestClient(create_app(node, background=False)) as client:
        before = client.get("/datasets/v1", headers=HTML).text
        assert 'href="/releases/v1/cc-by-sa/data.jsonl"' in before and "Request access" not in before
        _gate(node, SA)
        page = client.get("/datasets/v1", headers=HTML)
        assert page.status_code == 200
        text = page.text
        assert "Request access" in text and 'href="/access"' in text
        assert 'href="/releases/v1/cc-by-sa/' not in text, "no link to a gated data file"
        assert "cc-by-sa/data.jsonl" in text, "still listed, with its SHA-256"
        assert 'href="/releases/v1/cc-by/data.jsonl"' in text, "open buckets stay linked"
        assert 'href="/releases/v1/SHA256SUMS"' in text and 'href="/releases/v1/README.md"' in text


SCOPE = (
    "Gating closes this co-op's own files; copies peers already hold in federated releases cut before"
    " the gate stay public."
)


def test_gated_pages_dataset_page_and_access_page_say_what_gating_cannot_reach(node: Node) -> None:
    _released(node)
    with TestClient(create_app(node, background=False)) as client:
        assert SCOPE not in " ".join(client.get("/access", headers=HTML).text.split())
        _gate(node, SA)
        for page in ("/datasets/v1", "/access"):
            text = " ".join(client.get(page, headers=HTML).text.split())
            assert SCOPE.replace("'", "&#39;") in text or SCOPE in text, page


def test_gated_pages_access_form_says_the_request_is_shown_to_the_voters_when_members_vote(
    node: Node,
) -> None:
    from coop.governance import apply_changes
    from coop.node.collective.settings import current_settings, store_settings
    from coop.node.members.accounts import Role
    from coop.node.members.repository import add_member
    from coop.node.members.sessions import start_session
    from coop.node.web.sessions import COOKIE

    _gate(node, SA)
    bea, _ = node.store.write(
        lambda c: add_member(c, name="bea", role=Role.BUILDER, salt=node.salt, now=node.now())
    )
    raw = node.store.write(lambda c: start_session(c, bea, now=node.now()))
    note = "your request will be shown to the members who vote"
    with TestClient(create_app(node, background=False)) as client:
        client.cookies.set(COOKIE, raw)
        assert note not in client.get("/access", headers=HTML).text  # an admin decides alone

        def vote_rule(conn):  # type: ignore[no-untyped-def]
            changed = apply_changes(
                current_settings(conn).settings, {"rules.classes.access.admin_alone": False}
            )
            store_settings(conn, changed, at=node.now(), actor="test", via="test")

        node.store.write(vote_rule)
        page = " ".join(client.get("/access", headers=HTML).text.split())
        assert note in page and 'href="/governance"' in page
