"""A member's announce choice through the API: GET /api/v1/me shows it, PATCH /api/v1/me sets it.

In-process over the framework's test client (no network); the choice is what the Bluesky
channel's previews and the Atom feed read (members.announce).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from coop.node.http.app import create_app
from coop.node.members.repository import announces
from coop.node.runtime import Node

from factories import make_member, make_node


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    made = make_node(tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def client(node: Node) -> Iterator[TestClient[Litestar]]:
    with TestClient(create_app(node, background=False)) as test_client:
        yield test_client


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_me_shows_and_sets_announce(node: Node, client: TestClient[Litestar]) -> None:
    member, token = make_member(node, "ana")
    other, _other_token = make_member(node, "bo")
    shown = client.get("/api/v1/me", headers=_auth(token))
    assert shown.status_code == 200, shown.text
    assert shown.json() == {"name": "ana", "role": "member", "announce": True}

    off = client.patch("/api/v1/me", json={"announce": False}, headers=_auth(token))
    assert off.status_code == 200, off.text
    assert off.json()["announce"] is False
    assert client.get("/api/v1/me", headers=_auth(token)).json()["announce"] is False
    assert node.store.read(lambda c: announces(c, member.id)) is False
    assert node.store.read(lambda c: announces(c, other.id)) is True  # only the caller's own

    unchanged = client.patch("/api/v1/me", json={}, headers=_auth(token))
    assert unchanged.status_code == 200 and unchanged.json()["announce"] is False
    on = client.patch("/api/v1/me", json={"announce": True}, headers=_auth(token))
    assert on.json()["announce"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [({"announce": "no"}, "announce"), ({"announce": 0}, "announce"), ({"nickname": "x"}, "nickname")],
)
def test_me_patch_bad_input_is_a_problem_naming_the_field(
    node: Node, client: TestClient[Litestar], body: dict[str, object], field: str
) -> None:
    member, token = make_member(node)
    refused = client.patch("/api/v1/me", json=body, headers=_auth(token))
    assert refused.status_code in (400, 422), refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["field"] == field
    assert node.store.read(lambda c: announces(c, member.id)) is True


def test_me_patch_needs_a_member_token(client: TestClient[Litestar]) -> None:
    refused = client.patch("/api/v1/me", json={"announce": False})
    assert refused.status_code == 401
    assert refused.json()["field"] == "Authorization"
