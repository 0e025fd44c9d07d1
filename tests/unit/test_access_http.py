"""The gated-access API: who may do what (anonymous, builder, another member, admin), and bad input named."""

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
from coop.node.members.accounts import Role
from coop.node.members.repository import add_member
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process

GATED = "CC-BY-4.0"


@dataclass(frozen=True)
class Api:
    client: TestClient[Any]
    node: Node
    builder: dict[str, str]
    other: dict[str, str]  # a second builder
    member: dict[str, str]
    admin: dict[str, str]


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    node = make_node(tmp_path)
    try:
        node.change_settings({"access.gated": [GATED]}, actor=Actor("test", admin=True))
        contributor, _ = make_member(node)
        contribute(node, contributor, license=GATED)
        contribute(node, contributor, license="CC0-1.0")
        process(node)
        node.cut_release()
        tokens = {}
        for name in ("bea", "otto"):
            _, token = node.store.write(
                lambda c, n=name: add_member(c, name=n, role=Role.BUILDER, salt=node.salt, now=node.now())
            )
            tokens[name] = token
        _, member_token = make_member(node)
        _, admin_token = make_member(node, admin=True)
        with TestClient(create_app(node, background=False)) as client:
            yield Api(
                client,
                node,
                _auth(tokens["bea"]),
                _auth(tokens["otto"]),
                _auth(member_token),
                _auth(admin_token),
            )
    finally:
        node.close()


def _ask(api: Api, headers: dict[str, str], **changes: Any) -> Any:
    body = {
        "who": "Bea Builder, Example Lab",
        "purpose": "fine-tune a small assistant for tenants' letters",
        "model": "example/tenant-7b",
        "open_weights": True,
        "buckets": [GATED],
        "accept_terms": True,
        **changes,
    }
    return api.client.post("/api/v1/access/requests", json=body, headers=headers)


def _gated_file(api: Api) -> str:
    summary = api.client.get("/releases/v1").json()
    bucket = next(b for b in summary["buckets"] if b["license"] == GATED)
    return str(bucket["files"][0]["path"])


def _approved(api: Api) -> int:
    made = _ask(api, api.builder)
    assert made.status_code == 201, made.text
    number = int(made.json()["id"])
    decided = api.client.post(f"/api/v1/access/requests/{number}/approve", headers=api.admin)
    assert decided.status_code == 200, decided.text
    assert decided.json()["proposal"] is None  # the default ACCESS rule lets an admin decide alone
    return number


def test_access_terms_are_public_and_name_the_gated_buckets(api: Api) -> None:
    answer = api.client.get("/api/v1/access/terms")
    assert answer.status_code == 200
    assert answer.json()["gated"] == [GATED]
    assert any("re-identif" in t for t in answer.json()["terms"])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/access/requests"),
        ("GET", "/api/v1/access/requests"),
        ("GET", "/api/v1/access/requests/1"),
        ("POST", "/api/v1/access/requests/1/approve"),
        ("POST", "/api/v1/access/requests/1/refuse"),
        ("POST", "/api/v1/access/requests/1/revoke"),
        ("POST", "/api/v1/access/requests/1/urls"),
        ("GET", "/api/v1/access/register"),
    ],
)
def test_access_routes_without_a_credential_answer_401(api: Api, method: str, path: str) -> None:
    answer = api.client.request(method, path, json={})
    assert answer.status_code == 401
    assert answer.json()["field"] == "Authorization"


@pytest.mark.parametrize("decision", ["approve", "refuse", "revoke"])
def test_access_decisions_by_a_builder_or_member_are_forbidden(api: Api, decision: str) -> None:
    number = _ask(api, api.builder).json()["id"]
    for who in (api.builder, api.member):
        answer = api.client.post(f"/api/v1/access/requests/{number}/{decision}", headers=who)
        assert answer.status_code == 403, answer.text
    assert api.client.get(f"/api/v1/access/requests/{number}", headers=api.admin).json()["state"] == "pending"


def test_access_requests_are_listed_to_their_builder_and_to_admins_only(api: Api) -> None:
    mine = _ask(api, api.builder).json()["id"]
    theirs = _ask(api, api.other, who="Otto, Other Lab").json()["id"]
    listed = api.client.get("/api/v1/access/requests", headers=api.builder).json()
    assert [r["id"] for r in listed] == [mine]
    everything = api.client.get("/api/v1/access/requests", headers=api.admin).json()
    assert {r["id"] for r in everything} == {mine, theirs}
    assert api.client.get("/api/v1/access/requests", headers=api.member).json() == []
    # Another's request is not there to see at all.
    assert api.client.get(f"/api/v1/access/requests/{theirs}", headers=api.builder).status_code == 404
    assert api.client.get(f"/api/v1/access/requests/{mine}", headers=api.builder).status_code == 200


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"accept_terms": False}, "accept_terms"),
        ({"who": 7}, "who"),
        ({"buckets": "CC-BY-4.0"}, "buckets"),
        ({"open_weights": "yes"}, "open_weights"),
        ({"surprise": 1}, "surprise"),
        ({"purpose": ""}, "purpose"),
        ({"buckets": ["CC-BY-5.0"]}, "buckets"),
    ],
)
def test_access_request_with_bad_input_is_a_problem_naming_the_field(
    api: Api, changes: dict[str, Any], field: str
) -> None:
    answer = _ask(api, api.builder, **changes)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["field"].startswith(field), answer.json()


def test_access_request_missing_a_field_or_not_json_is_refused(api: Api) -> None:
    missing = api.client.post("/api/v1/access/requests", json={"who": "x"}, headers=api.builder)
    assert missing.status_code == 422 and missing.json()["field"]
    form = api.client.post("/api/v1/access/requests", data={"who": "x"}, headers=api.builder)
    assert form.status_code == 415 and form.json()["field"] == "Content-Type"


def test_access_request_ids_in_paths_are_whole_numbers(api: Api) -> None:
    for bad in ("abc", "0", "01", "1e3", "٣"):
        answer = api.client.get(f"/api/v1/access/requests/{bad}", headers=api.admin)
        assert answer.status_code == 404, bad
        assert answer.json()["field"] == "request"


def test_access_requests_are_rate_limited_per_member(api: Api) -> None:
    answers = [_ask(api, api.other, who=f"Otto {i}").status_code for i in range(8)]
    assert 429 in answers
    assert answers[0] == 201
    # Another builder is not slowed by Otto.
    assert _ask(api, api.builder).status_code == 201


def test_access_url_is_minted_for_the_grantee_only(api: Api) -> None:
    number = _approved(api)
    path = _gated_file(api)
    minted = api.client.post(
        f"/api/v1/access/requests/{number}/urls", json={"release": "v1", "path": path}, headers=api.builder
    )
    assert minted.status_code == 201, minted.text
    assert minted.json()["url_path"].startswith("/gated/v1/")
    public_url = api.node.config.node.public_url.rstrip("/")
    assert minted.json()["url"] == public_url + minted.json()["url_path"]  # absolute
    for stranger in (api.other, api.member):
        refused = api.client.post(
            f"/api/v1/access/requests/{number}/urls", json={"release": "v1", "path": path}, headers=stranger
        )
        assert refused.status_code == 403, refused.text
    # The signed URL works with the grantee's own token, and the download is in the register.
    body = api.client.get(minted.json()["url_path"], headers=api.builder)
    assert body.status_code == 200, body.text
    mine = api.client.get("/api/v1/access/register", headers=api.builder).json()
    assert [(r["release"], r["path"]) for r in mine] == [("v1", path)]
    assert api.client.get("/api/v1/access/register", headers=api.other).json() == []
    everything = api.client.get("/api/v1/access/register", headers=api.admin).json()
    assert [r["who"] for r in everything] == ["bea"]


def test_access_url_for_a_pending_or_revoked_request_is_refused(api: Api) -> None:
    pending = _ask(api, api.builder).json()["id"]
    path = _gated_file(api)
    body = {"release": "v1", "path": path}
    refused = api.client.post(f"/api/v1/access/requests/{pending}/urls", json=body, headers=api.builder)
    assert refused.status_code == 403 and refused.json()["field"] == "grant", refused.text
    number = _approved(api)
    revoked = api.client.post(f"/api/v1/access/requests/{number}/revoke", headers=api.admin)
    assert revoked.status_code == 200 and revoked.json()["request"]["state"] == "revoked"
    again = api.client.post(f"/api/v1/access/requests/{number}/urls", json=body, headers=api.builder)
    assert again.status_code == 403 and "revoked" in again.json()["detail"], again.text


def test_access_url_minting_is_rate_limited(api: Api) -> None:
    number = _approved(api)
    body = {"release": "v1", "path": _gated_file(api)}
    codes = [
        api.client.post(f"/api/v1/access/requests/{number}/urls", json=body, headers=api.builder).status_code
        for _ in range(40)
    ]
    assert codes[0] == 201 and 429 in codes


def test_access_refusal_is_recorded_and_shown_to_the_builder(api: Api) -> None:
    number = _ask(api, api.builder).json()["id"]
    refused = api.client.post(f"/api/v1/access/requests/{number}/refuse", headers=api.admin)
    assert refused.status_code == 200
    seen = api.client.get(f"/api/v1/access/requests/{number}", headers=api.builder).json()
    assert seen["state"] == "refused"


def test_access_routes_are_in_the_openapi_document(api: Api) -> None:
    paths = api.client.get("/schema/openapi.json").json()["paths"]
    for path in (
        "/api/v1/access/terms",
        "/api/v1/access/requests",
        "/api/v1/access/requests/{number}/urls",
        "/api/v1/access/register",
    ):
        assert path in paths, path


def _signed_in(api: Api, token: str) -> str:
    """A browser session for ``token`` on the test client; returns the session's CSRF token."""
    page = api.client.get("/login")
    login = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert login is not None
    origin = {"Origin": str(api.client.base_url).rstrip("/")}
    data = {"token": token, "login_csrf": login.group(1), "next": "/access"}
    assert api.client.post("/login", data=data, headers=origin, follow_redirects=False).status_code == 303
    found = re.search(r'name="csrf" value="([^"]+)"', api.client.get("/access").text)
    assert found is not None
    return found.group(1)


def test_access_page_forms_refuse_a_stale_csrf_token_or_another_site(api: Api) -> None:
    csrf = _signed_in(api, api.builder["Authorization"].removeprefix("Bearer "))
    origin = str(api.client.base_url).rstrip("/")
    form = {"who": "Bea", "purpose": "p", "model": "m", "buckets": GATED, "accept_terms": "yes"}
    stale = api.client.post("/access/requests", data={**form, "csrf": "x" * 32}, headers={"Origin": origin})
    assert stale.status_code == 403
    foreign = api.client.post(
        "/access/requests", data={**form, "csrf": csrf}, headers={"Origin": "https://elsewhere.example"}
    )
    assert foreign.status_code == 403
    assert api.client.get("/api/v1/access/requests", headers=api.builder).json() == []
    sent = api.client.post(
        "/access/requests", data={**form, "csrf": csrf}, headers={"Origin": origin}, follow_redirects=False
    )
    assert sent.status_code == 303 and "done=requested" in sent.headers["location"]
    assert [r["who"] for r in api.client.get("/api/v1/access/requests", headers=api.builder).json()] == [
        "Bea"
    ]
    # A builder's session does not open the admins' page.
    assert api.client.get("/admin/access", follow_redirects=False).status_code == 403


HUGE = ("v99999999999999999999", "v" + "9" * 5000, "99999999999999999999", "9" * 5000, "v9007199254740992")


@pytest.mark.parametrize("release", HUGE)
def test_access_url_for_a_huge_release_is_a_problem_naming_release(api: Api, release: str) -> None:
    number = _approved(api)
    body = {"release": release, "path": _gated_file(api)}
    answer = api.client.post(f"/api/v1/access/requests/{number}/urls", json=body, headers=api.builder)
    assert answer.status_code == 404, answer.text
    assert answer.json()["field"] == "release"


@pytest.mark.parametrize("decision", ["approve", "refuse", "revoke", "urls"])
def test_access_huge_request_ids_are_not_found_on_every_route(api: Api, decision: str) -> None:
    for bad in ("9" * 20, "9" * 5000, "9007199254740992"):
        answer = api.client.post(
            f"/api/v1/access/requests/{bad}/{decision}",
            json={"release": "v1", "path": "x"},
            headers=api.admin,
        )
        assert answer.status_code == 404, (bad[:24], answer.text)
        assert answer.json()["field"] == "request"
    for bad in ("9" * 20, "9" * 5000):
        assert api.client.get(f"/api/v1/access/requests/{bad}", headers=api.admin).status_code == 404


def test_access_revocation_names_who_approved_and_who_revoked(api: Api) -> None:
    number = _approved(api)
    approver = api.node.access.get(number).decided_by
    api.node.access.revoke(number, actor=Actor("rosa", admin=True))
    seen = api.client.get(f"/api/v1/access/requests/{number}", headers=api.admin).json()
    assert (seen["state"], seen["decided_by"], seen["revoked_by"]) == ("revoked", approver, "rosa")
    _signed_in(api, api.admin["Authorization"].removeprefix("Bearer "))
    page = api.client.get("/admin/access").text
    row = page[page.index(f'id="r{number}"') :]
    assert re.search(rf"approved by {approver} at [^;<]+; revoked by rosa at ", row), row[:600]


def test_access_huge_numbers_in_the_pages_forms_are_refused_not_500(api: Api) -> None:
    csrf = _signed_in(api, api.builder["Authorization"].removeprefix("Bearer "))
    origin = {"Origin": str(api.client.base_url).rstrip("/")}
    number = _approved(api)
    for release in ("v" + "9" * 30, "v" + "9" * 5000):
        form = {"csrf": csrf, "release": release, "path": _gated_file(api)}
        sent = api.client.post(f"/access/requests/{number}/download", data=form, headers=origin)
        assert sent.status_code == 404, sent.text[:300]
    for bad in ("9" * 30, "9" * 5000):
        form = {"csrf": csrf, "release": "v1", "path": _gated_file(api)}
        sent = api.client.post(f"/access/requests/{bad}/download", data=form, headers=origin)
        assert sent.status_code == 404, sent.text[:300]
    csrf = _signed_in(api, api.admin["Authorization"].removeprefix("Bearer "))
    for bad in ("9" * 30, "9" * 5000):
        for decision in ("approve", "refuse", "revoke"):
            sent = api.client.post(
                f"/admin/access/requests/{bad}/{decision}", data={"csrf": csrf}, headers=origin
            )
            assert sent.status_code == 404, sent.text[:300]
