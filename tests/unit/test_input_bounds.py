"""Odd numbers in paths, queries and forms: 4xx problems naming the field, never a 500, never an alias.

Python's int() takes any Unicode digit and any length: ``/releases/v%D9%A3`` (Arabic-Indic
three) served v3, and a 30-digit id reached SQLite and answered 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from litestar.testing import TestClient

from coop.node.errors import InputError, NotFoundError
from coop.node.http.app import create_app
from coop.node.http.params import MAX_WHOLE, release_version, whole_number
from coop.node.members.sessions import find_session, start_session
from coop.node.runtime import Node
from coop.node.web.sessions import COOKIE

from factories import contribute, make_member, make_node, process

BIG = "9" * 30
ORIGIN = "ab" * 32


@dataclass
class Site:
    node: Node
    client: TestClient  # type: ignore[type-arg]
    admin: dict[str, str]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    node = make_node(tmp_path_factory.mktemp("bounds"))
    admin, token = make_member(node, "ada", admin=True)
    for _ in range(3):  # v1, v2, v3: v3 exists, so an alias of it would be served
        contribute(node, admin, license="CC0-1.0", scope="public")
        process(node)
        node.cut_release(actor="ada")
    try:
        with TestClient(create_app(node, background=False)) as client:
            yield Site(node, client, {"Authorization": f"Bearer {token}"})
    finally:
        node.close()


def _problem(response: object, status: int, field: str) -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
    assert response.json()["field"] == field, response.text  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("method", "path", "status", "field"),
    [
        ("get", f"/api/v1/governance/proposals/{BIG}", 404, "proposal"),
        ("get", "/api/v1/governance/proposals/%D9%A3", 404, "proposal"),
        ("get", "/api/v1/governance/proposals/-1", 404, "proposal"),
        ("post", f"/api/v1/governance/proposals/{BIG}/votes", 404, "proposal"),
        ("get", f"/api/v1/governance/audit?after={BIG}", 422, "after"),
        ("get", "/api/v1/governance/audit?after=%D9%A3", 422, "after"),
        ("get", "/api/v1/governance/audit?after=1e3", 422, "after"),
        ("get", f"/api/v1/governance/audit?limit={BIG}", 422, "limit"),
        ("get", f"/api/v1/governance/payouts/{BIG}/csv", 404, "payout"),
        ("get", f"/api/v1/federation/origins/{ORIGIN}/manifests/{BIG}", 404, "seq"),
        ("get", f"/api/v1/federation/origins/{ORIGIN}/manifests/%D9%A3", 404, "seq"),
        ("get", f"/api/v1/federation/origins/{ORIGIN}/records?limit={BIG}", 422, "limit"),
        ("get", "/releases/%C2%B9", 404, "version"),
        ("get", "/releases/v%D9%A3", 404, "version"),
        ("get", "/api/v1/releases/v%D9%A3", 404, "version"),
        ("get", "/releases/v03", 404, "version"),
        ("get", f"/releases/v{BIG}", 404, "version"),
        ("get", "/releases/v%D9%A3/SHA256SUMS", 404, "version"),
        ("get", "/releases/federated/v%D9%A3", 404, "version"),
        ("get", f"/browse?page={BIG}", 422, "page"),
        ("get", "/browse?page=%D9%A3", 422, "page"),
    ],
)
def test_odd_numbers_are_problems_naming_the_field(
    site: Site, method: str, path: str, status: int, field: str
) -> None:
    headers = {**site.admin, "Content-Type": "application/json"}
    if method == "get":
        response = site.client.get(path, headers=headers)
    else:
        response = site.client.post(path, headers=headers, content=b'{"choice": "yes"}')
    _problem(response, status, field)


def test_the_real_release_is_still_served(site: Site) -> None:
    assert site.client.get("/releases/v3").json()["name"] == "v3"
    assert site.client.get("/api/v1/releases/3").json()["name"] == "v3"


@pytest.mark.parametrize("path", ["/static/%00", "/static/app.css%00", "/static/a%00b"])
def test_a_nul_byte_in_a_static_path_is_not_found(site: Site, path: str) -> None:
    response = site.client.get(path)
    assert response.status_code == 404, response.text


def test_web_forms_refuse_odd_ids_without_a_500(site: Site) -> None:
    node = site.node
    admin, _ = make_member(node, "web-admin", admin=True)
    now = node.now()
    session_id = node.store.write(lambda c: start_session(c, admin, now=now))
    session = node.store.read(lambda c: find_session(c, session_id, now=now))
    assert session is not None
    site.client.cookies.set(COOKIE, session_id)
    origin = {"Origin": str(site.client.base_url).rstrip("/")}
    for path in (f"/governance/proposals/{BIG}/vote", "/governance/proposals/%D9%A3/vote"):
        response = site.client.post(path, data={"csrf": session.csrf, "choice": "yes"}, headers=origin)
        assert response.status_code == 404, (path, response.status_code, response.text[:300])
    for path in (f"/admin/bounties/{BIG}/close", "/admin/bounties/%D9%A3/close"):
        response = site.client.post(path, data={"csrf": session.csrf}, headers=origin)
        assert response.status_code == 404, (path, response.status_code, response.text[:300])
    response = site.client.post(
        "/admin/bounties",
        data={"csrf": session.csrf, "title": "t", "target": "\u0663"},
        headers=origin,
    )
    assert response.status_code == 422, response.text[:300]
    site.client.cookies.clear()


@pytest.mark.parametrize("text", ["\u0663", "\u00b9", "03", "+3", " 3", "3.0", "1e3", "-1", BIG, ""])
def test_whole_number_takes_only_canonical_ascii_digits(text: str) -> None:
    with pytest.raises(InputError):
        whole_number(text, field="n")


def test_whole_number_bounds_and_release_names() -> None:
    assert whole_number("0", field="n") == 0
    assert whole_number(str(MAX_WHOLE), field="n") == MAX_WHOLE
    with pytest.raises(NotFoundError):
        whole_number(str(MAX_WHOLE + 1), field="n", error=NotFoundError)
    assert release_version("v3") == 3 == release_version("3")
    for text in ("v\u0663", "\u00b9", "v0", "v03", "vv3", f"v{BIG}"):
        with pytest.raises(NotFoundError):
            release_version(text)


def test_channel_tags_take_ascii_digits_only() -> None:
    from coop.node.channels.base import release_tag

    assert release_tag("v3-r2") == (3, 2)
    assert release_tag("v\u0663") is None
