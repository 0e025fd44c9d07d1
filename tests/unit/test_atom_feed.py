"""The Atom feed and highlights (issue 16): valid RFC 4287, read by a real feed parser, stable
ids, escaped titles, and highlighted records shown only as their previews allow.

All in-process on real nodes; nothing here crosses a network (the web tests use Litestar's
in-process client).  The schema is RFC 4287 Appendix B, copied verbatim into
``tests/fixtures/atom.rnc``, converted by rnc2rng and checked by lxml's RELAX NG validator; its
two Schematron rules (which lxml's RELAX NG ignores) are checked by hand in :func:`_valid`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import feedparser
import msgspec
import pytest
import rnc2rng
from litestar.testing import TestClient
from lxml import etree

from coop.node.cli import main
from coop.node.collective.audit import recent_entries
from coop.node.collective.settings import Actor
from coop.node.config import write_config
from coop.node.contributions.rights import withdraw_contribution
from coop.node.http.app import create_app
from coop.node.members.accounts import Member
from coop.node.members.repository import set_announce
from coop.node.releases.highlights import set_highlight
from coop.node.runtime import Node
from coop.node.storage.datadir import DataDir
from coop.node.web.atom import MAX_ENTRIES, Feed, FeedEntry, feed_of, render

from factories import contribute, make_member, make_node, process

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "atom.rnc"
NS = {"a": "http://www.w3.org/2005/Atom"}
BASE = "http://testserver.local"
HTML = {"Accept": "text/html", "Origin": BASE}
HOSTILE = '</title><link href="https://evil.example/"/><script>alert(1)</script> & ]]> <!-- x'


@pytest.fixture(scope="module")
def schema() -> etree.RelaxNG:
    rng = rnc2rng.dumps(rnc2rng.loads(FIXTURE.read_text(encoding="utf-8")))
    # rnc2rng declares the schema's `local = ""` prefix as xmlns:local="", which XML namespaces
    # forbid (and nothing in the output uses): drop the declaration before lxml parses it.
    rng = rng.replace('xmlns:local=""', "")
    return etree.RelaxNG(etree.fromstring(rng.encode("utf-8")))


def _valid(schema: etree.RelaxNG, body: bytes) -> etree._Element:
    root = etree.fromstring(body)
    assert schema.validate(root), schema.error_log
    # Appendix B's Schematron rules: an author (the feed's), an alternate link per entry.
    assert root.find("a:author/a:name", NS) is not None
    for entry in root.findall("a:entry", NS):
        assert entry.find("a:link[@rel='alternate']", NS) is not None
    return root


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path, name="Feed & <Co-op>")
    try:
        yield node
    finally:
        node.close()


def _released(node: Node, count: int = 2, **extra: Any) -> tuple[Member, list[str]]:
    member, _ = make_member(node)
    uids = [contribute(node, member, scope="public", license="CC0-1.0", **extra) for _ in range(count)]
    process(node)
    node.cut_release()
    node.index_catalog()
    return member, uids


def _highlight(node: Node, uid: str, *, on: bool = True) -> None:
    node.store.write(
        lambda c: set_highlight(c, uid=uid, on=on, actor="root", at=node.now(), signer=node.signer)
    )


def _feed(node: Node) -> bytes:
    return render(feed_of(node, base_url=node.config.node.public_url))


def _entry_ids(body: bytes) -> list[str]:
    return [e.id for e in feedparser.parse(body).entries]


def test_atom_feed_empty_node_is_valid_rfc4287(node: Node, schema: etree.RelaxNG) -> None:
    root = _valid(schema, _feed(node))
    assert root.findall("a:entry", NS) == []


def test_atom_feed_releases_and_highlights_are_valid_rfc4287(node: Node, schema: etree.RelaxNG) -> None:
    _, uids = _released(node)
    _highlight(node, uids[0])
    root = _valid(schema, _feed(node))
    assert len(root.findall("a:entry", NS)) == 2


def test_atom_feed_parses_with_feedparser_and_ids_stay_stable(node: Node) -> None:
    member, uids = _released(node, 3)
    _highlight(node, uids[0])
    first = _feed(node)
    assert _feed(node) == first, "the same feed, byte for byte, when nothing changed"
    parsed = feedparser.parse(first)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.feed.title == "Feed & <Co-op>: releases and highlighted chats"
    assert parsed.feed.links[0].rel == "self" and parsed.feed.links[0].href.endswith("/feed.atom")
    release, record = sorted(parsed.entries, key=lambda e: "/browse/" in e.link)
    assert release.id.startswith("urn:uuid:") and record.id.startswith("urn:uuid:")
    assert release.link == "http://127.0.0.1:8000/datasets/v1"
    assert "3 records" in release.summary and "CC0-1.0" in release.summary
    assert record.link == f"http://127.0.0.1:8000/browse/{uids[0]}"
    # A revision (a withdrawn record taken out) keeps the release's id; its summary says so.
    node.store.write(lambda c: withdraw_contribution(c, uid=uids[2], member=member, now=node.now()))
    node.revise_releases()
    revised = feedparser.parse(_feed(node))
    assert sorted(e.id for e in revised.entries) == sorted(e.id for e in parsed.entries)
    assert "Revision 2" in next(e for e in revised.entries if e.id == release.id).summary


def test_atom_feed_ids_survive_rename_new_public_url_and_key_rotation(tmp_path: Path) -> None:
    """The ids name the node (its first key) and the thing, never the co-op's name or URL."""
    node = make_node(tmp_path, name="Old Name")
    try:
        _, uids = _released(node, 1)
        _highlight(node, uids[0])
        before = feedparser.parse(_feed(node))
        node.federation.rotate_key(actor="local-admin")
        root = node.data.root
        config = node.data.config()
    finally:
        node.close()
    renamed = msgspec.structs.replace(config.node, name="New Name", public_url="https://feed.example.org")
    write_config(DataDir.open(root).config_path, msgspec.structs.replace(config, node=renamed))
    reopened = Node(root)
    try:
        body = _feed(reopened)
    finally:
        reopened.close()
    after = feedparser.parse(body)
    assert after.feed.title.startswith("New Name") and b"https://feed.example.org/browse/" in body
    assert after.feed.id == before.feed.id
    assert sorted(e.id for e in after.entries) == sorted(e.id for e in before.entries)
    assert len({e.id for e in after.entries} | {after.feed.id}) == 3, "each thing its own id"
    assert not any(uids[0] in e.id for e in after.entries), "no raw uid in an id"


def test_atom_feed_served_with_no_cache_and_etag(node: Node) -> None:
    """In-process (Litestar's test client): GET and HEAD ask caches to revalidate each time."""
    with TestClient(create_app(node, background=False), base_url=BASE) as client:
        for method in ("GET", "HEAD"):
            answer = client.request(method, "/feed.atom")
            assert answer.status_code == 200
            assert answer.headers["cache-control"] == "no-cache", method
            assert answer.headers["etag"]


def test_atom_feed_hostile_record_title_is_escaped(node: Node, schema: etree.RelaxNG) -> None:
    _, uids = _released(node, 1, text=f"User: {HOSTILE}\nAssistant: noted.")
    _highlight(node, uids[0])
    body = _feed(node)
    root = _valid(schema, body)
    assert b"<script" not in body and b"&lt;script&gt;" in body, "markup arrives as text"
    titles = [t.text for t in root.findall("a:entry/a:title", NS)]
    assert any(t is not None and t.startswith("</title><link href=") for t in titles), titles
    links = [link.get("href") for link in root.iter("{http://www.w3.org/2005/Atom}link")]
    assert not any("evil.example" in (href or "") for href in links), links


def test_atom_feed_render_drops_what_xml_cannot_hold(schema: etree.RelaxNG) -> None:
    entry = FeedEntry(
        id="tag:example.org,2026-01-01:x",
        title=f"a\x01b\ufffe{HOSTILE}",
        updated=0,
        link="/x",
        summary="\x0b",
    )
    feed = Feed(id="tag:example.org,2026-01-01:f", title="t", author="a", updated=0, self_link="/f",
                home_link="/", entries=(entry,))  # fmt: skip
    root = _valid(schema, render(feed))
    assert root.find("a:entry/a:title", NS).text == "ab" + HOSTILE


def test_atom_feed_withdrawn_highlighted_record_is_absent(node: Node) -> None:
    member, uids = _released(node)
    for uid in uids:
        _highlight(node, uid)
    assert all(uid.encode() in _feed(node) for uid in uids)
    node.store.write(lambda c: withdraw_contribution(c, uid=uids[1], member=member, now=node.now()))
    body = _feed(node)
    assert uids[0].encode() in body
    assert uids[1].encode() not in body


def test_atom_feed_embargo_hides_highlighted_record_until_lifted(node: Node) -> None:
    _, uids = _released(node, 1)
    _highlight(node, uids[0])
    admin = Actor("root", admin=True)
    node.change_settings({"embargo": {"on": True, "tags": [], "languages": []}}, actor=admin)
    assert uids[0].encode() not in _feed(node)
    assert len(_entry_ids(_feed(node))) == 1, "the release itself stays in the feed"
    node.change_settings({"embargo": {"on": False, "tags": [], "languages": []}}, actor=admin)
    assert uids[0].encode() in _feed(node)


def test_atom_feed_holds_at_most_fifty_entries_newest_first(node: Node) -> None:
    _, uids = _released(node, MAX_ENTRIES + 2)
    for uid in uids:
        _highlight(node, uid)
    parsed = feedparser.parse(_feed(node))
    assert len(parsed.entries) == MAX_ENTRIES
    stamps = [e.updated_parsed for e in parsed.entries]
    assert stamps == sorted(stamps, reverse=True)


def test_atom_feed_static_site_writes_it_with_site_links(
    node: Node, schema: etree.RelaxNG, tmp_path: Path
) -> None:
    from coop.node.web.static_site import build_site

    _, uids = _released(node, 1)
    _highlight(node, uids[0])
    out = tmp_path / "site"
    build_site(node, out)
    body = (out / "feed.atom").read_bytes()
    _valid(schema, body)
    assert _entry_ids(body) == _entry_ids(_feed(node)), "the same ids as the node's feed"
    hrefs = re.findall(rb'href="([^"]+)"', body)
    assert b"/datasets/v1" in hrefs and f"/browse/{uids[0]}".encode() in hrefs
    assert (
        b'rel="alternate" type="application/atom+xml" href="/feed.atom"' in (out / "index.html").read_bytes()
    )
    headers = (out / "_headers").read_text(encoding="utf-8").split("\n/")
    feed_rules = next(block for block in headers if block.startswith("feed.atom"))
    assert "  Cache-Control: no-cache" in feed_rules.splitlines()


# -- coop highlight --------------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_highlight_cli_json_audits_each_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = make_node(tmp_path)
    try:
        _, uids = _released(node, 1)
        root = str(node.data.root)
    finally:
        node.close()
    code, out, _ = _cli(capsys, "highlight", root, uids[0], "--json")
    assert code == 0 and json.loads(out) == {
        "uid": uids[0],
        "highlighted": True,
        "changed": True,
        "shown": True,
        "reason": None,
    }
    code, out, _ = _cli(capsys, "highlight", root, uids[0], "--json")
    assert code == 0 and json.loads(out)["changed"] is False
    code, out, _ = _cli(capsys, "highlight", root, uids[0], "--remove")
    assert code == 0 and out.startswith("removed the highlight")
    reopened = Node(Path(root))
    try:
        actions = [e.action for e in reopened.store.read(lambda c: recent_entries(c, limit=2))]
        assert actions == ["record.unhighlight", "record.highlight"]
        assert uids[0].encode() not in _feed(reopened)
    finally:
        reopened.close()


@pytest.mark.parametrize(
    ("case", "because"),
    [("announce-off", "does not let the co-op announce"), ("ai-use-refused", "AI-use preference refuses")],
)
def test_highlight_cli_record_the_preview_policy_hides_says_not_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, because: str
) -> None:
    node = make_node(tmp_path)
    try:
        member, uids = _released(node, 1, ai_use="train-ai=n" if case == "ai-use-refused" else None)
        if case == "announce-off":
            node.store.write(lambda c: set_announce(c, member.id, False))
        root = str(node.data.root)
    finally:
        node.close()
    code, out, _ = _cli(capsys, "highlight", root, uids[0])
    assert code == 0 and out.startswith(f"highlighted {uids[0]}, but not shown: ")
    assert because in out and "feed carries it" not in out
    code, out, _ = _cli(capsys, "highlight", root, uids[0], "--json")
    answer = json.loads(out)
    assert code == 0 and answer["shown"] is False and answer["highlighted"] is True
    assert because in answer["reason"]


def test_highlight_cli_unknown_record_is_one_line_error_naming_uid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = make_node(tmp_path)
    root = str(node.data.root)
    node.close()
    code, out, err = _cli(capsys, "highlight", root, "no-such-record", "--json")
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert json.loads(err)["field"] == "uid"


# -- the admin's button ----------------------------------------------------------------------------


def _signed_in(client: TestClient[Any], token: str) -> None:
    form = client.get("/login", headers=HTML).text
    login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', form)
    assert login_csrf
    signed = client.post(
        "/login",
        data={"token": token, "next": "/me", "login_csrf": login_csrf.group(1)},
        headers=HTML,
        follow_redirects=False,
    )
    assert signed.status_code == 303, signed.text


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found
    return found.group(1)


def test_highlight_button_on_record_page_is_for_admins_with_csrf(node: Node) -> None:
    _, uids = _released(node, 1)
    uid = uids[0]
    _, admin_token = make_member(node, "root", admin=True)
    _, member_token = make_member(node, "sam")
    with (
        TestClient(create_app(node, background=False), base_url=BASE) as admin,
        TestClient(create_app(node, background=False), base_url=BASE) as member,
    ):
        _signed_in(admin, admin_token)
        _signed_in(member, member_token)
        page = member.get(f"/browse/{uid}", headers=HTML).text
        assert "/admin/highlight/" not in page, "no button for a member"
        refused = member.post(
            f"/admin/highlight/{uid}", data={"csrf": _csrf(page), "highlight": "on"}, headers=HTML
        )
        assert refused.status_code == 403
        page = admin.get(f"/browse/{uid}", headers=HTML).text
        assert f'action="/admin/highlight/{uid}"' in page
        stale = admin.post(
            f"/admin/highlight/{uid}",
            data={"csrf": "x", "highlight": "on"},
            headers=HTML,
            follow_redirects=False,
        )
        assert stale.status_code == 403
        assert uid.encode() not in _feed(node)
        done = admin.post(
            f"/admin/highlight/{uid}",
            data={"csrf": _csrf(page), "highlight": "on"},
            headers=HTML,
            follow_redirects=False,
        )
        assert done.status_code == 303 and done.headers["location"] == f"/browse/{uid}?done=highlighted"
        assert uid.encode() in admin.get("/feed.atom").content
        page = admin.get(done.headers["location"], headers=HTML).text
        assert "Remove the highlight" in page and 'value="off"' in page
        missing = admin.post(
            "/admin/highlight/nope", data={"csrf": _csrf(page), "highlight": "on"}, headers=HTML
        )
        assert missing.status_code == 404


def test_admin_dashboard_lists_highlights_with_title_link_and_remove_button(node: Node) -> None:
    """The dashboard lists each highlighted record by its catalogue title, linked to its page, with
    a remove button that comes back to the list; a record withdrawn since stays listed, removable."""
    member, uids = _released(node, 3)
    _, admin_token = make_member(node, "root", admin=True)
    shown, gone = uids[0], uids[1]
    for uid in (shown, gone):
        _highlight(node, uid)
    titles = dict(node.store.read(lambda c: c.execute("SELECT uid, title FROM catalog").fetchall()))
    node.store.write(lambda c: withdraw_contribution(c, uid=gone, member=member, now=node.now()))
    node.index_catalog()
    with TestClient(create_app(node, background=False), base_url=BASE) as admin:
        _signed_in(admin, admin_token)
        page = admin.get("/admin", headers=HTML).text
        listed = page[page.index('id="highlights"') : page.index('id="quarantine"')]
        assert f'<a href="/browse/{shown}">{titles[shown]}</a>' in listed
        assert f"{gone}</span> (no longer in the catalogue)" in listed
        assert uids[2] not in listed, "only highlighted records"
        assert listed.count('name="highlight" value="off"') == 2
        removed = admin.post(
            f"/admin/highlight/{gone}",
            data={"csrf": _csrf(page), "highlight": "off", "back": "admin"},
            headers=HTML,
            follow_redirects=False,
        )
        assert removed.status_code == 303
        assert removed.headers["location"] == "/admin?done=unhighlighted#highlights"
        page = admin.get("/admin", headers=HTML).text
        listed = page[page.index('id="highlights"') : page.index('id="quarantine"')]
        assert gone not in listed and shown in listed
