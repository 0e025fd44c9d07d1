"""The record browser at scale (issue 14): keyset pages, a capped count, and what it may show.

``catalog.browse`` reads pages from a uid cursor (never an OFFSET) and counts matches only up
to a cap; these tests pin that it still finds a record by a word, drops a withdrawn record at
once, never shows a record that is not public, and that paging both ways covers every match
exactly once.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from litestar.testing import TestClient

from coop.governance import Embargo
from coop.node.contributions.rights import withdraw_contribution
from coop.node.http.app import create_app
from coop.node.members.accounts import Member
from coop.node.releases import catalog
from coop.node.releases.catalog import Listing, SearchFilters
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process

NO_EMBARGO = Embargo()
HTML = {"Accept": "text/html"}


def chat(word: str) -> str:
    return f"User: What should I know about {word}?\nAssistant: About {word}, read the guide first."


def released(node: Node, member: Member, words: list[str], **extra: object) -> list[str]:
    uids = [contribute(node, member, text=chat(w), **extra) for w in words]  # type: ignore[arg-type]
    process(node)
    node.cut_release()
    node.index_catalog()
    return uids


def browse(
    node: Node, after: str | None = None, before: str | None = None, size: int = 2, **filters: object
) -> Listing:
    wanted = SearchFilters(**filters)  # type: ignore[arg-type]
    return node.store.read(
        lambda c: catalog.browse(c, wanted, embargo=NO_EMBARGO, after=after, before=before, page_size=size)
    )


def uids(listing: Listing) -> list[str]:
    return [row.uid for row in listing.rows]


def test_browse_search_finds_a_record_by_a_word_of_its_text(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    member, _ = make_member(node, "ines")
    telescope, _kiln = released(node, member, ["telescopes", "kilns"], scope="public")
    assert uids(browse(node, q="telescopes")) == [telescope]
    assert uids(browse(node, q="telesc")) == [], "a word matches whole ..."
    assert uids(browse(node, q="telesc*")) == [telescope], "... or, with a *, as a prefix"
    assert uids(browse(node, q="guide telescopes")) == [telescope], "every word must match"
    assert uids(browse(node, q='kilns" OR "telescopes')) == [], "quotes and operators are not FTS syntax"
    assert browse(node, q="telescopes").count_text == "1"


def test_browse_filters_by_tag_exactly_not_by_a_word_of_the_text(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    member, _ = make_member(node, "ines")
    (tagged,) = released(node, member, ["rowing"], scope="public", tags=["boats"])
    released(node, member, ["boats"], scope="public")  # the word in its text, not as a tag
    assert uids(browse(node, tag="boats")) == [tagged]
    assert uids(browse(node, tag="boat")) == [], "a tag matches whole, never by prefix"


def test_browse_drops_a_withdrawn_record_from_search_facets_and_its_page_at_once(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    member, _ = make_member(node, "ines")
    (uid,) = released(node, member, ["heliotropes"], scope="public", tags=["flowers"], language="pt-BR")
    assert uids(browse(node, q="heliotropes")) == [uid]
    node.store.write(lambda c: withdraw_contribution(c, uid=uid, member=member, now=node.now()))
    # No indexing run, no release: the same read right after the withdrawal's commit.
    assert uids(browse(node, q="heliotropes")) == []
    assert uids(browse(node, tag="flowers")) == []
    facets = node.store.read(lambda c: catalog.facets(c, embargo=NO_EMBARGO))
    assert "flowers" not in facets["tag"] and "pt-BR" not in facets["language"]
    with TestClient(create_app(node, background=False)) as client:
        assert client.get(f"/browse/{uid}", headers=HTML).status_code == 404
        assert uid not in client.get("/browse?q=heliotropes", headers=HTML).text


def test_an_anonymous_visitor_never_sees_node_or_federation_scope_records(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    member, _ = make_member(node, "ines")
    (public,) = released(node, member, ["quince public"], scope="public", tags=["open"])
    (at_home,) = released(node, member, ["quince athome"], scope="node", tags=["hometag"])
    (partners,) = released(node, member, ["quince partners"], scope="federation", tags=["fedtag"])
    assert uids(browse(node, q="quince")) == [public]
    facets = node.store.read(lambda c: catalog.facets(c, embargo=NO_EMBARGO))
    assert "hometag" not in facets["tag"] and "fedtag" not in facets["tag"]
    with TestClient(create_app(node, background=False)) as client:
        page = client.get("/browse?q=quince", headers=HTML).text
        assert public in page and at_home not in page and partners not in page
        assert "hometag" not in client.get("/browse", headers=HTML).text
        for hidden in (at_home, partners):
            assert client.get(f"/browse/{hidden}", headers=HTML).status_code == 404
            assert client.get(f"/browse?after={hidden}", headers=HTML).status_code == 200


@pytest.mark.parametrize("filters", [{}, {"q": "lantern"}, {"label": "fail"}, {"q": "lantern", "tag": "lit"}])
def test_browse_pages_cover_every_match_exactly_once_both_ways(
    tmp_path: Path, filters: dict[str, str]
) -> None:
    node = make_node(tmp_path)
    member, _ = make_member(node, "ines")
    matching = released(
        node, member, [f"lantern no{i}" for i in range(7)], scope="public", label="fail", tags=["lit"]
    )
    released(node, member, ["candles", "torches"], scope="public")  # match only the empty filter
    expected = set(matching) | (set(uids(browse(node, size=50))) if not filters else set())

    seen: list[str] = []
    pages: list[Listing] = []
    listing = browse(node, **filters)
    for _ in range(20):  # bounded: 9 records at 2 a page
        pages.append(listing)
        seen += uids(listing)
        if listing.next_after is None:
            break
        listing = browse(node, after=listing.next_after, page=listing.page + 1, **filters)
    assert len(seen) == len(set(seen)) == len(expected) and set(seen) == expected
    assert [p.page for p in pages] == list(range(1, len(pages) + 1))

    back: list[str] = uids(pages[-1])
    listing = pages[-1]
    for _ in range(20):
        if listing.prev_before is None:
            break
        listing = browse(node, before=listing.prev_before, page=listing.page - 1, **filters)
        back = uids(listing) + back
    assert back == seen, "paging back returns the same pages, newest first"
    assert listing.page == 1


def test_browse_counts_matches_only_up_to_a_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog, "_COUNT_CAP", 3)
    node = make_node(tmp_path)
    member, _ = make_member(node, "ines")
    released(node, member, [f"pebble no{i}" for i in range(5)], scope="public")
    listing = browse(node, q="pebble", size=10)
    assert (listing.total, listing.more, listing.count_text) == (3, True, "3+")
    assert len(listing.rows) == 5, "the cap bounds the count, not the page"
    assert browse(node, q="no3").count_text == "1"


def test_the_browse_page_links_its_next_page_by_uid(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    member, _ = make_member(node, "ines")
    made = released(node, member, [f"walnut no{i}" for i in range(25)], scope="public")
    with TestClient(create_app(node, background=False)) as client:
        first = client.get("/browse?q=walnut", headers=HTML).text
        assert "25 records found" in first
        link = re.search(r'href="(/browse\?q=walnut&amp;after=[^"]+)"', first)
        assert link is not None
        second = client.get(link.group(1).replace("&amp;", "&"), headers=HTML).text
        shown = {u for u in made if f"/browse/{u}" in first} | {u for u in made if f"/browse/{u}" in second}
        assert shown == set(made) and "Page 2" in second


def test_a_prefix_needs_three_letters_and_a_search_holds_two_at_most(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    member, _ = make_member(node, "ines")
    (telescope,) = released(node, member, ["telescopes"], scope="public")
    short = browse(node, q="te*")
    assert uids(short) == [], "te* is the word te, not a prefix query over every te... word"
    assert short.notices and "at least 3 letters" in short.notices[0]
    assert uids(browse(node, q="tel*")) == [telescope]
    assert catalog._browse_match(SearchFilters(q="s* c* p*"))[0] == '"s" AND "c" AND "p"'
    match, notices = catalog._browse_match(SearchFilters(q="tel* gui* rea*"))
    assert match == '"tel"* AND "gui"* AND "rea"', "a third prefix matches as a whole word"
    assert notices and "At most 2 prefixes" in notices[0]
    with TestClient(create_app(node, background=False)) as client:
        page = client.get("/browse?q=t*", headers=HTML)
        assert page.status_code == 200 and "at least 3 letters" in page.text
        assert "at least 3 letters before the" in client.get("/browse", headers=HTML).text, "documented"


def test_a_search_past_its_deadline_answers_too_broad_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = make_node(tmp_path)
    member, _ = make_member(node, "ines")
    (telescope,) = released(node, member, ["telescopes"], scope="public")
    assert uids(browse(node, q="telescopes")) == [telescope]
    # A budget of nothing, the clock read at every SQLite step: the first look is past it.
    listing = node.store.read(
        lambda c: catalog.browse(
            c, SearchFilters(q="telescopes"), embargo=NO_EMBARGO, budget_s=0.0, check_every=1
        )
    )
    assert listing.too_broad and listing.rows == [] and listing.summary == catalog.TOO_BROAD
    assert uids(browse(node, q="telescopes")) == [telescope], "the deadline ends with the call"
    monkeypatch.setattr(catalog, "_BUDGET_S", 0.0)
    monkeypatch.setattr(catalog, "_CHECK_EVERY", 1)
    with TestClient(create_app(node, background=False)) as client:
        page = client.get("/browse?q=telescopes", headers=HTML)
        assert page.status_code == 200
        assert "too broad; add a word or a filter" in page.text and telescope not in page.text


def test_column_filters_are_read_by_the_rarest_filters_index(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    member, _ = make_member(node, "ines")
    released(node, member, [f"spoon no{i}" for i in range(4)], scope="public", label="fail")
    filters = SearchFilters(license="CC0-1.0", label="fail", model="zzz")
    conn = node.store.reader()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        listing = catalog.browse(conn, filters, embargo=NO_EMBARGO)
    finally:
        conn.set_trace_callback(None)
    assert listing.rows == []
    scans = [s for s in statements if "FROM catalog k" in s]
    assert scans, statements
    for sql in scans:
        plan = " ".join(str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert "catalog_by_model" in plan, (sql, plan)


def test_no_match_among_the_newest_counted_says_so_not_zero_plus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog, "_COUNT_SCAN", 2)
    node = make_node(tmp_path)
    member, _ = make_member(node, "ines")
    (old,) = released(node, member, ["pebble old"], scope="public", label="fail")
    released(node, member, [f"pebble no{i}" for i in range(3)], scope="public", label="good")
    listing = browse(node, q="pebble", label="fail")
    assert (listing.total, listing.more, uids(listing)) == (0, True, [old])
    assert listing.summary.startswith("No matches among the newest 2 records with these words")
    assert "0+" not in listing.summary
