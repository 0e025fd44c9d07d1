"""The member's choice on "My data": may the co-op announce their released chats (microblog, feed).

The form posts behind the session's CSRF token and changes only the member's own choice;
previews read it each time (a member who unticks it is never previewed again).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from coop.node.channels.previews import hidden_now, previews
from coop.node.http.app import create_app
from coop.node.members.repository import announces
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process

BASE = "http://testserver.local"
HTML = {"Accept": "text/html", "Origin": BASE}


def _sign_in(client: TestClient[Any], token: str) -> str:
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
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/me", headers=HTML).text)
    assert found
    return found.group(1)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    made = make_node(tmp_path)
    try:
        yield made
    finally:
        made.close()


def test_announce_choice_unticked_keeps_the_members_records_out_of_previews(node: Node) -> None:
    robin, robin_token = make_member(node, "robin")
    sam, _ = make_member(node, "sam")
    mine = contribute(node, robin, license="CC-BY-4.0")
    theirs = contribute(node, sam, license="CC-BY-4.0")
    process(node)
    node.cut_release()
    node.index_catalog()
    with TestClient(create_app(node, background=False), base_url=BASE) as client:
        csrf = _sign_in(client, robin_token)
        page = client.get("/me", headers=HTML).text
        assert "Announce my released chats on the co-op" in page
        assert re.search(r'name="announce" value="1" checked', page)  # on by default
        off = client.post("/me/announce", data={"csrf": csrf}, headers=HTML, follow_redirects=False)
        assert off.status_code == 303 and "done=announce-off" in off.headers["location"]
        assert node.store.read(lambda c: announces(c, robin.id)) is False
        assert node.store.read(lambda c: announces(c, sam.id)) is True  # only the member's own choice
        assert not re.search(r'name="announce" value="1" checked', client.get("/me", headers=HTML).text)
        hidden = hidden_now(node)
        shown = node.store.read(lambda c: previews(c, base_url=BASE, hidden=hidden, limit=10))
        assert [p.uid for p in shown] == [theirs] and mine not in str(shown)
        # A stale or missing token changes nothing.
        forged = client.post("/me/announce", data={"announce": "1"}, headers=HTML, follow_redirects=False)
        assert forged.status_code == 403
        assert node.store.read(lambda c: announces(c, robin.id)) is False
        on = client.post(
            "/me/announce", data={"announce": "1", "csrf": csrf}, headers=HTML, follow_redirects=False
        )
        assert on.status_code == 303 and "done=announce-on" in on.headers["location"]
        shown = node.store.read(lambda c: previews(c, base_url=BASE, hidden=hidden, limit=10))
        assert {p.uid for p in shown} == {mine, theirs}


def test_announce_choice_needs_a_signed_in_member(node: Node) -> None:
    with TestClient(create_app(node, background=False), base_url=BASE) as client:
        answer = client.post("/me/announce", data={"announce": "1"}, headers=HTML, follow_redirects=False)
        assert answer.status_code in (303, 401, 403)
        assert "done=announce" not in answer.headers.get("location", "")
