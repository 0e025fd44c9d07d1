"""The Atom feed served by a real node: ``coop serve`` in its own process on 127.0.0.1, the record
highlighted by the real ``coop highlight`` command, the bytes read by a real feed parser.

Nothing is faked: the node, the command line and the HTTP server are the real ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import feedparser
import httpx
import pytest

from factories import released_root
from nodeproc import NodeProcess, coop

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Served:
    url: str
    highlighted: str
    plain: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root, uids, _ = released_root(tmp_path_factory.mktemp("feed"), "Feed Co-op", license="CC-BY-4.0", count=2)
    answer = json.loads(coop("highlight", str(root), uids[0], "--json").stdout)
    assert answer == {"uid": uids[0], "highlighted": True, "changed": True, "shown": True, "reason": None}
    server = NodeProcess(root).start()
    try:
        yield Served(server.url, uids[0], uids[1])
    finally:
        server.stop()


def test_feed_http_serves_atom_with_its_media_type_and_validators(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        first = client.get("/feed.atom")
        assert first.status_code == 200, first.text
        assert first.headers["content-type"] == "application/atom+xml; charset=utf-8"
        assert client.get("/feed.atom").content == first.content, "the same bytes at the same URL"
        tag = first.headers["etag"]
        again = client.get("/feed.atom", headers={"If-None-Match": tag})
        assert again.status_code == 304 and again.content == b""
        head = client.head("/feed.atom")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["etag"] == tag
        # Caches keep it but revalidate every time: a hidden record leaves the feed at once.
        assert first.headers["cache-control"] == head.headers["cache-control"] == "no-cache"


def test_feed_http_bytes_parse_as_atom_with_release_and_highlight(served: Served) -> None:
    body = httpx.get(f"{served.url}/feed.atom", timeout=30).content
    parsed = feedparser.parse(body)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert parsed.feed.title == "Feed Co-op: releases and highlighted chats"
    links = sorted(e.link for e in parsed.entries)
    assert links == sorted(
        ["http://127.0.0.1:8000/datasets/v1", f"http://127.0.0.1:8000/browse/{served.highlighted}"]
    )
    assert served.plain not in body.decode(), "only highlighted records are entries"


def test_feed_http_pages_announce_the_feed(served: Served) -> None:
    page = httpx.get(served.url + "/", timeout=30).text
    assert '<link rel="alternate" type="application/atom+xml" href="/feed.atom"' in page
