"""The public catalogue: indexing release by release, search and filters, embargo, leaderboards, bounties."""

from __future__ import annotations

from pathlib import Path

from coop.governance import Embargo
from coop.node.collective.settings import Actor
from coop.node.contributions.rights import withdraw_contribution
from coop.node.members.accounts import Member
from coop.node.releases import bounties, catalog
from coop.node.releases.catalog import SearchFilters
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process

NO_EMBARGO = Embargo()
ADMIN = Actor("ada", admin=True)


def chat(word: str) -> str:
    return f"User: How do I file taxes on {word}?\nAssistant: For {word}, start with the annual form."


def released(node: Node, member: Member, words: list[str], **extra: object) -> list[str]:
    uids = [contribute(node, member, text=chat(w), **extra) for w in words]  # type: ignore[arg-type]
    process(node)
    node.cut_release()
    return uids


def find(node: Node, **filters: object) -> list[str]:
    page = node.store.read(lambda c: catalog.search(c, SearchFilters(**filters), embargo=NO_EMBARGO))  # type: ignore[arg-type]
    return [row.uid for row in page.rows]


def test_records_are_indexed_release_by_release_and_only_once(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    member, _ = make_member(node, "ines")
    first = released(node, member, ["alpha", "beta", "gamma"])
    assert node.index_catalog(batch=2) == 3  # two batches, one release
    second = released(node, member, ["delta"])
    assert node.index_catalog(batch=2) == 1
    assert node.index_catalog() == 0, "nothing is indexed twice"
    assert sorted(find(node)) == sorted(first + second)
    rows = node.store.read(lambda c: catalog.search(c, SearchFilters(), embargo=NO_EMBARGO)).rows
    assert {r.released_in for r in rows} == {"v1", "v2"}


def test_a_record_released_late_is_still_indexed(tmp_path: Path) -> None:
    """An accepted record kept out of v1 by an embargo enters v2: the catalogue must not skip it."""
    node = make_node(tmp_path)
    member, _ = make_member(node, "ines")
    held = contribute(node, member, text=chat("embargoed"), tags=["held"])
    process(node)
    node.change_settings({"embargo": {"on": True, "tags": ["held"]}}, actor=ADMIN)
    released(node, member, ["free"])
    node.index_catalog()
    assert held not in find(node)
    node.change_settings({"embargo": {"on": False}}, actor=ADMIN)
    node.cut_release()
    assert node.index_catalog() == 1
    assert held in find(node)


def test_search_matches_words_and_filters_and_refuses_no_fts_syntax(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    member, _ = make_member(node, "ines")
    crypto, wine = released(node, member, ["cryptocurrency", "wine"], language="en")
    fail = released(node, member, ["sailboats"], label="fail", license="CC0-1.0", tags=["boats"])[0]
    node.index_catalog()
    assert find(node, q="crypto") == [crypto], "words match by prefix"
    assert find(node, q="wine annual") == [wine], "every word must match"
    assert find(node, q='wine" OR "crypto') == [], "quotes and operators are words, not FTS syntax"
    assert find(node, q="NEAR(") == []
    assert find(node, label="fail") == [fail]
    assert find(node, license="CC0-1.0") == [fail]
    assert find(node, tag="boats") == [fail]
    assert sorted(find(node, language="en")) == sorted([crypto, wine])


def test_the_embargo_hides_records_from_search_record_pages_facets_and_leaderboards(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    member, _ = make_member(node, "ines")
    (secret,) = released(node, member, ["mergers"], tags=["deal"])
    (public,) = released(node, member, ["recipes"], tags=["food"])
    node.index_catalog()
    embargo = Embargo(on=True, tags=("deal",))

    page = node.store.read(lambda c: catalog.search(c, SearchFilters(), embargo=embargo))
    assert [r.uid for r in page.rows] == [public]
    assert node.store.read(lambda c: catalog.record(c, secret, embargo=embargo)) is None
    assert node.store.read(lambda c: catalog.record(c, public, embargo=embargo)) is not None
    assert "deal" not in node.store.read(lambda c: catalog.facets(c, embargo=embargo))["tag"]
    whole = Embargo(on=True)
    assert node.store.read(lambda c: catalog.leaderboards(c, embargo=whole)).contributors == []


def test_withdrawal_takes_a_record_out_of_the_catalogue_at_once(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    member, _ = make_member(node, "ines")
    (uid,) = released(node, member, ["solar"])
    node.index_catalog()
    assert find(node, q="solar") == [uid]
    node.store.write(lambda c: withdraw_contribution(c, uid=uid, member=member, now=node.now()))
    assert find(node, q="solar") == []
    assert node.store.read(lambda c: catalog.record(c, uid, embargo=NO_EMBARGO)) is None


def test_leaderboards_count_by_handle_and_put_anonymous_members_together(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    ines, _ = make_member(node, "ines")
    omar, _ = make_member(node, "omar")
    released(node, ines, ["a1", "a2"], attribution="username")
    released(node, ines, ["a3"], attribution="anonymous", label="fail")
    released(node, omar, ["b1"], attribution="anonymous", label="fail")
    released(node, omar, ["b2"], attribution="pseudonym:sea-otter")
    node.index_catalog()
    boards = node.store.read(lambda c: catalog.leaderboards(c, embargo=NO_EMBARGO))
    assert ("ines", 2, 0) in boards.contributors
    assert ("anonymous", 0, 2) in boards.contributors, "anonymous members are one row"
    assert ("sea-otter", 1, 0) in boards.contributors
    assert all("omar" not in row[0] for row in boards.contributors), "an anonymous member is never named"
    (model,) = boards.models
    assert model[1:] == (2, 3, 1.5)


def test_bounty_progress_counts_matching_accepted_contributions_made_since_it_was_posted(
    tmp_path: Path,
) -> None:
    node = make_node(tmp_path)
    member, _ = make_member(node, "ines")
    now = node.now()

    def post(at: int) -> int:
        return node.store.write(
            lambda c: bounties.add_bounty(
                c,
                title=f"Tax law fails in Indonesian ({at})",
                description="",
                label="fail",
                language="id",
                tag="tax",
                target=3,
                admin="ada",
                now=at,
            )
        )

    earlier, later = post(now - 60), post(now + 3600)
    contribute(node, member, text=chat("match"), label="fail", language="id", tags=["tax"])
    contribute(node, member, text=chat("waiting"), label="fail", language="id", tags=["tax"])
    contribute(node, member, text=chat("good"), label="good", language="id", tags=["tax"])
    contribute(node, member, text=chat("english"), label="fail", language="en", tags=["tax"])
    contribute(node, member, text=chat("untagged"), label="fail", language="id")
    process(node)
    contribute(node, member, text=chat("unprocessed"), label="fail", language="id", tags=["tax"])
    progress = {b.id: b for b in node.store.read(bounties.bounties)}
    assert progress[earlier].progress == 2, "the two accepted matches; not good, English, untagged or waiting"
    assert progress[earlier].percent == 66
    assert progress[later].progress == 0, "contributions made before a bounty do not count for it"
    node.store.write(lambda c: bounties.close_bounty(c, earlier, now=now))
    assert [b.id for b in node.store.read(bounties.bounties)] == [later]
    assert len(node.store.read(lambda c: bounties.bounties(c, include_closed=True))) == 2


def test_withdrawal_leaves_no_word_of_the_text_in_the_search_index_files(tmp_path: Path) -> None:
    """FTS5 keeps deleted words in its segments until merged: the revision after a withdrawal compacts it."""
    node = make_node(tmp_path)
    try:
        member, _ = make_member(node)
        marker = "zqcatalogmarker"
        uid = contribute(
            node, member, scope="public", text=f"User: what is {marker}?\nAssistant: {marker} is a word."
        )
        contribute(node, member, scope="public")
        process(node)
        node.cut_release()
        node.index_catalog()
        node.store.write(lambda c: withdraw_contribution(c, uid=uid, member=member, now=node.now()))
        node.revise_releases()
    finally:
        node.close()
    for path in node.data.root.glob("coop.sqlite3*"):
        assert marker.encode() not in path.read_bytes(), (
            f"{path.name} still holds a word of the withdrawn text"
        )
