"""Gated buckets over HTTP: the public route refuses their data files (card, Croissant and
checksums stay); a grantee downloads through a signed URL with their own credential, and
each download is in the register before the body is sent."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from coop.node.collective.settings import Actor
from coop.node.http.app import create_app
from coop.node.http.gated import SESSION_COOKIE
from coop.node.members.accounts import Member, Role
from coop.node.members.repository import add_member
from coop.node.members.sessions import start_session
from coop.node.releases.model import ReleaseSummary
from coop.node.releases.repository import get_release
from coop.node.runtime import Node
from coop.node.web.sessions import COOKIE

from factories import contribute, make_member, make_node, process

GATED = "CC-BY-4.0"
OPEN = "CC0-1.0"
ADMIN = Actor("ada", admin=True)


@dataclass
class Site:
    client: TestClient[Any]
    node: Node
    summary: ReleaseSummary
    bea: Member
    bea_token: str
    otto_token: str
    member_token: str

    def bucket_file(self, licence: str) -> str:
        bucket = next(b for b in self.summary.buckets if b.license.value == licence)
        return next(f.path for f in bucket.files if f.path.endswith("data.jsonl"))


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    node = make_node(tmp_path)
    try:
        node.change_settings({"access.gated": [GATED]}, actor=ADMIN)
        contributor, member_token = make_member(node)
        contribute(node, contributor, license=GATED)
        contribute(node, contributor, license=OPEN)
        process(node)
        node.cut_release()
        summary = node.store.read(lambda c: get_release(c, 1))
        made = {}
        for name in ("bea", "otto"):
            made[name] = node.store.write(
                lambda c, n=name: add_member(c, name=n, role=Role.BUILDER, salt=node.salt, now=node.now())
            )
        with TestClient(create_app(node, background=False)) as client:
            yield Site(client, node, summary, made["bea"][0], made["bea"][1], made["otto"][1], member_token)
    finally:
        node.close()


def grant(site: Site) -> int:
    view = site.node.access.request(
        site.bea,
        who="Bea Builder",
        purpose="evaluate a model",
        model="example/m",
        open_weights=True,
        buckets=(GATED,),
        accept_terms=True,
    )
    site.node.access.approve(view.id, actor=ADMIN)
    return view.id


def test_the_session_cookie_name_is_the_web_one() -> None:
    assert SESSION_COOKIE == COOKIE


def test_public_route_refuses_gated_data_files_and_keeps_the_rest(site: Site) -> None:
    gated = site.client.get(f"/releases/v1/{site.bucket_file(GATED)}")
    assert gated.status_code == 403
    assert "request access at /access" in gated.json()["detail"]
    assert site.client.head(f"/releases/v1/{site.bucket_file(GATED)}").status_code == 403
    assert site.client.get(f"/releases/v1/{site.bucket_file(OPEN)}").status_code == 200
    for name in ("README.md", "croissant.json", "SHA256SUMS"):
        assert site.client.get(f"/releases/v1/{name}").status_code == 200, name
    # Ungated again: the same file is public again.
    site.node.change_settings({"access.gated": []}, actor=ADMIN)
    assert site.client.get(f"/releases/v1/{site.bucket_file(GATED)}").status_code == 200


def test_a_grantee_downloads_through_a_signed_url_and_the_register_keeps_it(site: Site) -> None:
    number = grant(site)
    path = site.bucket_file(GATED)
    signed = site.node.access.mint_url(number, site.bea, release="v1", path=path)
    answer = site.client.get(signed.url, headers=_auth(site.bea_token))
    assert answer.status_code == 200, answer.text
    expected = (site.node.data.releases_path / site.summary.label / path).read_bytes()
    assert answer.content == expected
    assert answer.headers["cache-control"] == "private, no-store"
    assert answer.headers["content-disposition"] == 'attachment; filename="data.jsonl"'
    rows = site.node.access.register(member=site.bea)
    assert [(r.request_id, r.who, r.release, r.path, r.bytes) for r in rows] == [
        (number, "bea", "v1", path, len(expected))
    ]
    # The web session works as the credential too.
    raw = site.node.store.write(lambda c: start_session(c, site.bea, now=site.node.now()))
    site.client.cookies.set(COOKIE, raw)
    try:
        assert site.client.get(signed.url).status_code == 200
    finally:
        site.client.cookies.clear()
    assert len(site.node.access.register(member=None)) == 2


def test_the_link_serves_no_one_else_and_nothing_else(site: Site) -> None:
    number = grant(site)
    signed = site.node.access.mint_url(number, site.bea, release="v1", path=site.bucket_file(GATED))
    assert site.client.get(signed.url).status_code == 401  # no credential
    assert site.client.get(signed.url, headers=_auth(site.otto_token)).status_code == 403  # another builder
    tampered = signed.url.replace("expires=", "expires=9")
    assert site.client.get(tampered, headers=_auth(site.bea_token)).status_code == 403
    other = signed.url.replace(site.bucket_file(GATED), site.bucket_file(OPEN))
    assert site.client.get(other, headers=_auth(site.bea_token)).status_code == 403
    assert site.client.get(signed.url.split("?")[0], headers=_auth(site.bea_token)).status_code == 403
    assert site.node.access.register(member=None) == []
    site.node.access.revoke(number, actor=ADMIN)
    refused = site.client.get(signed.url, headers=_auth(site.bea_token))
    assert refused.status_code == 403 and "revoked" in refused.json()["detail"]
    assert site.node.access.register(member=None) == []


def test_a_withdrawal_awaiting_its_revision_holds_gated_files_too(site: Site) -> None:
    from coop.node.contributions.rights import withdraw_contribution
    from coop.node.members.repository import member_by_name

    number = grant(site)
    signed = site.node.access.mint_url(number, site.bea, release="v1", path=site.bucket_file(GATED))
    uid, name = site.node.store.read(
        lambda c: c.execute(
            "SELECT c.uid, m.name FROM contributions c JOIN members m ON m.id = c.member_id WHERE c.license = ?",
            (GATED,),
        ).fetchone()
    )
    owner = site.node.store.read(lambda c: member_by_name(c, name))
    assert owner is not None
    site.node.store.write(lambda c: withdraw_contribution(c, uid=uid, member=owner, now=site.node.now()))
    held = site.client.get(signed.url, headers=_auth(site.bea_token))
    assert held.status_code == 503, held.text
    assert site.node.access.register(member=None) == []  # nothing served, nothing registered


def test_downloads_per_hour_are_limited(site: Site) -> None:
    site.node.change_settings({"access.downloads_per_hour": 1}, actor=ADMIN)
    number = grant(site)
    signed = site.node.access.mint_url(number, site.bea, release="v1", path=site.bucket_file(GATED))
    assert site.client.get(signed.url, headers=_auth(site.bea_token)).status_code == 200
    limited = site.client.get(signed.url, headers=_auth(site.bea_token))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert len(site.node.access.register(member=None)) == 1


def test_builders_reach_only_their_own_routes(site: Site) -> None:
    headers = _auth(site.bea_token)
    assert site.client.get("/api/v1/me", headers=headers).status_code == 200
    body = {"label": "good", "consent": True, "format": "text", "content": "User: hi\nAssistant: hello"}
    refused = site.client.post("/api/v1/contributions", json=body, headers=headers)
    assert refused.status_code == 403 and "builder" in refused.json()["detail"]
    assert site.client.get("/api/v1/me/contributions", headers=headers).status_code == 403
    vote = site.client.post("/api/v1/governance/proposals/1/votes", json={"choice": "yes"}, headers=headers)
    assert vote.status_code == 403
    assert site.client.post(
        "/api/v1/contributions", json=body, headers=_auth(site.member_token)
    ).status_code in (
        200,
        201,
        202,
    )


def test_huge_numbers_in_a_gated_link_are_refused_never_a_500(site: Site) -> None:
    number = grant(site)
    path = site.bucket_file(GATED)
    signed = site.node.access.mint_url(number, site.bea, release="v1", path=path)
    query = signed.url.split("?", 1)[1]
    headers = _auth(site.bea_token)
    for release in ("v99999999999999999999", "v" + "9" * 5000, "9" * 30):
        answer = site.client.get(f"/gated/{release}/{path}?{query}", headers=headers)
        assert answer.status_code == 404, (release[:24], answer.text[:300])
        assert answer.json()["field"] == "release"
    for name in ("grant", "expires"):
        for huge in ("9" * 20, "9" * 5000):
            bad = re.sub(rf"{name}=[0-9]+", f"{name}={huge}", query)
            answer = site.client.get(f"/gated/v1/{path}?{bad}", headers=headers)
            assert answer.status_code == 403, (name, answer.text[:300])
            assert answer.json()["field"] == name
    assert site.node.access.register(member=None) == []
