"""Members never see or touch each other's contributions; admin endpoints are for admins only."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from coop.node.ids import uuid7

from harness import (
    add_member,
    assert_problem,
    bearer,
    chat_text,
    code_word,
    init_node,
    running,
    wait_for_state,
)
from nodeproc import NodeProcess

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@dataclass(frozen=True)
class Site:
    process: NodeProcess
    alice: httpx.Client
    bob: httpx.Client
    admin: httpx.Client
    anonymous: httpx.Client


@dataclass(frozen=True)
class Shared:
    """A contribution and the code word only its text holds."""

    uid: str
    word: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = init_node(tmp_path_factory.mktemp("isolation") / "node")
    tokens = {name: add_member(root, name) for name in ("alice", "bob")}
    tokens["admin"] = add_member(root, "admin", admin=True)
    with running(root) as process:
        clients = {name: httpx.Client(base_url=process.url, headers=bearer(t)) for name, t in tokens.items()}
        anonymous = httpx.Client(base_url=process.url)
        try:
            yield Site(process, clients["alice"], clients["bob"], clients["admin"], anonymous)
        finally:
            for client in (*clients.values(), anonymous):
                client.close()


def _share(client: httpx.Client, text: str, settle: set[str], word: str = "") -> Shared:
    response = client.post("/api/v1/contributions", json={"label": "fail", "consent": True, "content": text})
    assert response.status_code == 201, response.text
    uid: str = response.json()["uid"]
    wait_for_state(client, uid, settle)
    return Shared(uid, word)


@pytest.fixture(scope="module")
def alices(site: Site) -> Shared:
    word = code_word("alice")
    return _share(site.alice, chat_text(word), {"accepted", "released"}, word)


@pytest.fixture(scope="module")
def bobs(site: Site) -> Shared:
    word = code_word("bob")
    return _share(site.bob, chat_text(word), {"accepted", "released"}, word)


@pytest.fixture
def quarantined(site: Site) -> str:
    """A fresh quarantined contribution of Alice's (too much personal data)."""
    text = (SAMPLES / "quarantine-chat.txt").read_text(encoding="utf-8")
    return _share(site.alice, text, {"quarantined"}).uid


def _as_missing(problem: dict[str, Any], uid: str) -> dict[str, Any]:
    """The problem with the uid taken out, to compare answers about two different uids."""
    return {
        k: v.replace(uid, "<uid>") if isinstance(v, str) else v for k, v in problem.items() if k != "errors"
    }


OTHERS_REQUESTS = [
    ("read", "GET", None),
    ("rectify", "PATCH", {"label": "good", "license": "CC0-1.0", "note": "mine now"}),
    ("withdraw", "DELETE", None),
]


@pytest.mark.parametrize(("name", "method", "body"), OTHERS_REQUESTS, ids=[r[0] for r in OTHERS_REQUESTS])
def test_isolation_other_members_uid_answers_like_a_missing_one_and_stays_unchanged(
    site: Site, alices: Shared, name: str, method: str, body: dict[str, str] | None
) -> None:
    before = site.alice.get(f"/api/v1/contributions/{alices.uid}").json()
    missing = uuid7()

    theirs = site.bob.request(method, f"/api/v1/contributions/{alices.uid}", json=body)
    nobodys = site.bob.request(method, f"/api/v1/contributions/{missing}", json=body)

    theirs_problem = assert_problem(theirs, 404, "uid")
    nobodys_problem = assert_problem(nobodys, 404, "uid")
    assert _as_missing(theirs_problem, alices.uid) == _as_missing(nobodys_problem, missing)
    assert alices.word not in theirs.text
    assert site.alice.get(f"/api/v1/contributions/{alices.uid}").json() == before


def test_isolation_member_list_leaves_out_other_members(site: Site, alices: Shared, bobs: Shared) -> None:
    listed = {item["uid"] for item in site.bob.get("/api/v1/me/contributions").json()}
    assert bobs.uid in listed
    assert alices.uid not in listed


def test_isolation_member_export_leaves_out_other_members_text(
    site: Site, alices: Shared, bobs: Shared
) -> None:
    export = site.bob.get("/api/v1/me/contributions.jsonl")
    assert export.status_code == 200, export.text
    assert bobs.word in export.text
    assert alices.word not in export.text
    assert alices.uid not in export.text


ADMIN_ONLY = [
    ("waiting-room", "GET", "/api/v1/admin/waiting-room"),
    ("quarantine-list", "GET", "/api/v1/admin/quarantine"),
    ("quarantine-show", "GET", "/api/v1/admin/quarantine/{uid}"),
    ("quarantine-release", "POST", "/api/v1/admin/quarantine/{uid}/release"),
    ("quarantine-reject", "POST", "/api/v1/admin/quarantine/{uid}/reject"),
    ("process", "POST", "/api/v1/admin/process"),
    ("release", "POST", "/api/v1/admin/releases"),
    ("retention", "GET", "/api/v1/admin/retention"),
]


@pytest.mark.parametrize(("name", "method", "path"), ADMIN_ONLY, ids=[e[0] for e in ADMIN_ONLY])
def test_isolation_admin_endpoint_refuses_members_and_strangers(
    site: Site, quarantined: str, name: str, method: str, path: str
) -> None:
    url = path.format(uid=quarantined)
    releases_before = site.anonymous.get("/api/v1/releases").json()

    as_member = site.bob.request(method, url)
    as_owner = site.alice.request(method, url)
    as_stranger = site.anonymous.request(method, url)

    assert_problem(as_member, 403, "Authorization")
    assert_problem(as_owner, 403, "Authorization")
    assert_problem(as_stranger, 401, "Authorization")
    assert as_stranger.headers.get("WWW-Authenticate")
    assert (
        site.admin.get(f"/api/v1/contributions/{quarantined}").json()["contribution"]["state"]
        == "quarantined"
    )
    assert site.anonymous.get("/api/v1/releases").json() == releases_before


ADMIN_READS = [
    ("waiting-room", "/api/v1/admin/waiting-room"),
    ("quarantine-list", "/api/v1/admin/quarantine"),
    ("quarantine-show", "/api/v1/admin/quarantine/{uid}"),
    ("retention", "/api/v1/admin/retention"),
]


@pytest.mark.parametrize(("name", "path"), ADMIN_READS, ids=[e[0] for e in ADMIN_READS])
def test_isolation_admin_endpoint_answers_an_admin(
    site: Site, quarantined: str, name: str, path: str
) -> None:
    response = site.admin.get(path.format(uid=quarantined))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    if name == "quarantine-list":
        assert quarantined in {item["uid"] for item in response.json()}
    if name == "quarantine-show":
        shown = response.json()
        assert shown["contribution"]["uid"] == quarantined
        assert shown["submission"] is not None
        assert any(shown["hits"])


def test_isolation_admin_processes_and_releases(site: Site, alices: Shared) -> None:
    processed = site.admin.post("/api/v1/admin/process")
    assert processed.status_code == 200, processed.text
    assert set(processed.json()) >= {"accepted", "quarantined", "duplicate", "skipped"}

    released = site.admin.post("/api/v1/admin/releases")
    assert released.status_code == 201, released.text
    name = released.json()["name"]
    assert released.headers["Location"] == f"/releases/{name}"
    assert site.alice.get(f"/api/v1/contributions/{alices.uid}").json()["contribution"]["released_in"] == name


def test_isolation_admin_decides_a_quarantined_contribution(site: Site, quarantined: str) -> None:
    decided = site.admin.post(f"/api/v1/admin/quarantine/{quarantined}/reject")
    assert decided.status_code == 200, decided.text
    assert decided.json() == {"uid": quarantined, "state": "rejected", "decided_by": "admin"}
    detail = site.alice.get(f"/api/v1/contributions/{quarantined}").json()
    assert detail["contribution"]["state"] == "rejected"
    assert detail["submission"] is None
