"""Joint actions over HTTP and on the web page (issue 15): who may read and act, problems naming fields.

Anyone reads ``/api/v1/federation/actions`` and ``/federation/actions``; only an admin
proposes, signs and ends (a member is refused, an anonymous caller asked to sign in); a
refused field is named in the problem; an unknown action is a 404.  A second co-op's action
arrives as gossip would bring it, so the page can say this co-op is not bound until it signs.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from coop.node.collective.settings import Actor
from coop.node.http.app import create_app
from coop.node.runtime import Node

from factories import make_member, make_node

BASE = "http://testserver.local"
HTML = {"Accept": "text/html", "Origin": BASE}
ACTIONS = "/api/v1/federation/actions"


def _day(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).date().isoformat()


@dataclass
class Site:
    node: Node
    client: TestClient[Any]
    member: dict[str, str]
    admin: dict[str, str]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    node = make_node(tmp_path)
    _, member_token = make_member(node, "mel")
    _, admin_token = make_member(node, "ada", admin=True)
    try:
        with TestClient(create_app(node, background=False), base_url=BASE) as client:
            yield Site(
                node,
                client,
                {"Authorization": f"Bearer {member_token}"},
                {"Authorization": f"Bearer {admin_token}"},
            )
    finally:
        node.close()


def _embargo(**more: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "embargo",
        "reason": "hold back one tag while we negotiate",
        "threshold": 1,
        "coops": [],
        "tags": ["negotiation"],
        "ends_at": _day(30),
    }
    body.update(more)
    return body


def test_joint_http_anyone_reads_an_empty_list_with_the_note(site: Site) -> None:
    answer = site.client.get(ACTIONS)
    assert answer.status_code == 200
    body = answer.json()
    assert body["actions"] == [] and body["coop"] == site.node.identity.node_id
    assert "records already released stay released" in body["note"]


def test_joint_http_only_an_admin_proposes(site: Site) -> None:
    anonymous = site.client.post(ACTIONS, json=_embargo())
    member = site.client.post(ACTIONS, json=_embargo(), headers=site.member)
    assert anonymous.status_code == 401 and anonymous.json()["field"] == "Authorization"
    assert member.status_code == 403 and member.json()["field"] == "Authorization"
    assert site.client.get(ACTIONS).json()["actions"] == []
    admin = site.client.post(ACTIONS, json=_embargo(), headers=site.admin)
    assert admin.status_code == 201, admin.text
    taken = admin.json()
    action = taken["action"]
    assert taken["proposal"] is None  # an embargo: an admin may act alone by default
    assert action["status"] == "active" and action["bound_here"] is True
    assert action["tags"] == ["negotiation"] and action["kind"] == "embargo"
    assert [s["coop"] for s in action["signers"]] == [site.node.identity.node_id]
    assert action["signers"][0]["via"] == "admin"
    assert admin.headers["location"] == f"{ACTIONS}/{action['id']}"
    # Anyone reads it, whole or by a prefix of its id.
    listed = site.client.get(ACTIONS).json()["actions"]
    assert [a["id"] for a in listed] == [action["id"]]
    one = site.client.get(f"{ACTIONS}/{action['id'][:12]}")
    assert one.status_code == 200 and one.json()["id"] == action["id"]


def test_joint_http_member_and_anonymous_may_not_sign_or_end(site: Site) -> None:
    action = site.client.post(ACTIONS, json=_embargo(), headers=site.admin).json()["action"]
    for step in ("sign", "end"):
        assert site.client.post(f"{ACTIONS}/{action['id']}/{step}").status_code == 401
        assert site.client.post(f"{ACTIONS}/{action['id']}/{step}", headers=site.member).status_code == 403
    assert site.client.get(f"{ACTIONS}/{action['id']}").json()["status"] == "active"


def test_joint_http_an_admin_ends_what_this_coop_signed(site: Site) -> None:
    action = site.client.post(ACTIONS, json=_embargo(), headers=site.admin).json()["action"]
    again = site.client.post(f"{ACTIONS}/{action['id']}/sign", headers=site.admin)
    assert again.status_code == 409 and again.json()["field"] == "action"
    ended = site.client.post(f"{ACTIONS}/{action['id']}/end", headers=site.admin)
    assert ended.status_code == 200, ended.text
    view = ended.json()["action"]
    assert view["status"] == "ended" and view["bound_here"] is False
    assert [s["coop"] for s in view["enders"]] == [site.node.identity.node_id]
    assert view["here"] == "not bound: the action is ended"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "strike"}, "kind"),
        ({"threshold": 0}, "threshold"),
        ({"threshold": 3}, "threshold"),
        ({"ends_at": "next tuesday"}, "ends_at"),
        ({"ends_at": None}, "ends_at"),
        ({"licenses": ["GPL-3.0"]}, "licenses[0]"),
        ({"reason": ""}, "reason"),
        ({"surprise": 1}, "surprise"),
        ({"coops": ["not-a-node"]}, "coops"),
    ],
)
def test_joint_http_a_bad_field_is_a_problem_naming_it(
    site: Site, change: dict[str, Any], field: str
) -> None:
    answer = site.client.post(ACTIONS, json=_embargo(**change), headers=site.admin)
    assert answer.status_code in (400, 422), answer.text
    problem = answer.json()
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert problem["field"].startswith(field), problem
    assert site.client.get(ACTIONS).json()["actions"] == []


def test_joint_http_a_body_that_is_not_json_is_refused(site: Site) -> None:
    answer = site.client.post(
        ACTIONS, content=b"{not json", headers={**site.admin, "Content-Type": "application/json"}
    )
    assert answer.status_code == 400 and answer.json()["field"] == "body"
    plain = site.client.post(
        ACTIONS, content=b"kind=freeze", headers={**site.admin, "Content-Type": "text/plain"}
    )
    assert plain.status_code == 415


@pytest.mark.parametrize("action", ["0" * 64, "deadbeef", "xyz", "0" * 65])
def test_joint_http_an_unknown_action_is_404(site: Site, action: str) -> None:
    assert site.client.get(f"{ACTIONS}/{action}").status_code == 404
    for step in ("sign", "end"):
        refused = site.client.post(f"{ACTIONS}/{action}/{step}", headers=site.admin)
        assert refused.status_code == 404 and refused.json()["field"] == "action"


def test_joint_http_a_preference_shift_opens_a_vote_and_binds_nobody_yet(site: Site) -> None:
    body = _embargo(kind="preference", tags=[], ai_use="train-ai=n", condition="the model licence is open")
    answer = site.client.post(ACTIONS, json=body, headers=site.admin)
    assert answer.status_code == 201, answer.text
    taken = answer.json()
    assert taken["proposal"] is not None and taken["proposal"]["changes"] == {
        "joint.sign": taken["action"]["id"]
    }
    number = taken["proposal"]["id"]
    assert taken["action"]["status"] == "pending" and taken["action"]["bound_here"] is False
    assert (
        taken["action"]["here"]
        == f"not bound: this co-op did not sign; members' vote open: proposal {number}"
    )
    assert (taken["action"]["vote"], taken["action"]["vote_on"]) == (number, "sign")
    listed = site.client.get(f"{ACTIONS}/{taken['action']['id']}").json()
    assert listed["vote"] == number and listed["here"] == taken["action"]["here"]


def test_joint_http_a_bad_language_or_a_too_long_action_names_the_request_field(site: Site) -> None:
    """The signed document's names (``selector.languages[0]``, the envelope's ``size``) never leak
    out: the problem names the request's own field, in words that say what to do."""
    language = site.client.post(ACTIONS, json=_embargo(languages=["fr", "!!"]), headers=site.admin)
    assert language.status_code == 422, language.text
    assert language.json()["field"] == "languages" and "not a language tag" in language.json()["detail"]
    coops = [f"{i:064x}" for i in range(1, 64)]
    site.node.federation.joint.known = lambda: coops  # as if all were pinned (a propose names known co-ops)
    big = site.client.post(ACTIONS, json=_embargo(reason="x" * 1999, coops=coops), headers=site.admin)
    assert big.status_code == 422, big.text
    problem = big.json()
    assert problem["field"] == "reason"
    assert problem["detail"] == "the action is too long: shorten the reason or name fewer co-ops"
    assert site.client.get(ACTIONS).json()["actions"] == []


def test_joint_http_routes_are_in_the_openapi_document(site: Site) -> None:
    paths = site.client.get("/schema/openapi.json").json()["paths"]
    assert {"get", "post"} <= set(paths[ACTIONS])
    assert "post" in paths[f"{ACTIONS}/{{action}}/sign"] and "post" in paths[f"{ACTIONS}/{{action}}/end"]
    propose = paths[ACTIONS]["post"]
    assert {"401", "403", "422"} <= set(propose["responses"])
    assert "kind" in propose["requestBody"]["content"]["application/json"]["schema"]["properties"]


# -- the page -----------------------------------------------------------------------------


def _signed_in(client: TestClient[Any], token: str) -> str:
    form = client.get("/login", headers=HTML).text
    login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', form)
    assert login_csrf
    signed = client.post(
        "/login",
        data={"token": token, "next": "/federation/actions", "login_csrf": login_csrf.group(1)},
        headers=HTML,
        follow_redirects=False,
    )
    assert signed.status_code == 303, signed.text
    page = client.get("/federation/actions", headers=HTML).text
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found
    return found.group(1)


def _token(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def test_joint_page_anyone_reads_it_and_it_is_linked(site: Site) -> None:
    page = site.client.get("/federation/actions", headers=HTML)
    assert page.status_code == 200
    assert "records already released stay released" in page.text
    assert "No joint action is in force." in page.text
    assert 'action="/federation/actions"' not in page.text  # no form for a visitor
    assert 'href="/federation/actions"' in site.client.get("/federation", headers=HTML).text


def test_joint_page_an_admin_proposes_signs_off_and_the_page_says_bound(site: Site) -> None:
    csrf = _signed_in(site.client, _token(site.admin))
    form = {
        "csrf": csrf,
        "kind": "embargo",
        "tags": "negotiation, pay",
        "languages": "",
        "ends_at": _day(20),
        "threshold": "1",
        "reason": "hold back two tags",
    }
    posted = site.client.post("/federation/actions", data=form, headers=HTML, follow_redirects=False)
    assert posted.status_code == 303, posted.text
    assert posted.headers["location"].startswith("/federation/actions?done=joint-proposed")
    page = site.client.get("/federation/actions?done=joint-proposed", headers=HTML).text
    assert "The joint action is proposed" in page
    assert "bound: this co-op signed and the action is in force here" in page
    assert "negotiation, pay" in page and "by an admin" in page
    (action,) = site.client.get(ACTIONS).json()["actions"]
    ended = site.client.post(
        f"/federation/actions/{action['id']}/end", data={"csrf": csrf}, headers=HTML, follow_redirects=False
    )
    assert ended.status_code == 303
    assert site.client.get(f"{ACTIONS}/{action['id']}").json()["status"] == "ended"


def test_joint_page_refuses_a_stale_form_a_member_and_names_a_bad_field(site: Site) -> None:
    csrf = _signed_in(site.client, _token(site.admin))
    base = {"kind": "freeze", "threshold": "1", "reason": "r", "review_at": _day(10)}
    stale = site.client.post("/federation/actions", data={**base, "csrf": "x"}, headers=HTML)
    assert stale.status_code == 403
    assert stale.headers["content-type"].startswith("text/html")  # a page, not the API's problem JSON
    assert "this form is out of date" in stale.text
    bad = site.client.post(
        "/federation/actions", data={**base, "csrf": csrf, "review_at": "soon"}, headers=HTML
    )
    assert bad.status_code == 422 and 'id="err-review_at"' in bad.text
    assert site.client.get(ACTIONS).json()["actions"] == []
    with TestClient(create_app(site.node, background=False), base_url=BASE) as other:
        member_csrf = _signed_in(other, _token(site.member))
        refused = other.post("/federation/actions", data={**base, "csrf": member_csrf}, headers=HTML)
        assert refused.status_code == 403
        assert 'action="/federation/actions"' not in other.get("/federation/actions", headers=HTML).text


def test_joint_http_another_coops_action_binds_here_only_once_this_coop_signs(
    site: Site, tmp_path: Path
) -> None:
    """Beta proposes 2 of {Alpha, Beta} and signs; Alpha gets it as gossip brings it (Beta pinned),
    is not bound and says so, until its admin signs: then it is in force and binds Alpha too."""
    beta = make_node(tmp_path / "beta", name="Beta")
    try:
        here = site.node.identity.node_id
        site.node.federation.add_peer("http://127.0.0.1:9", beta.identity.node_id, name="Beta", actor="test")
        beta.federation.add_peer("http://127.0.0.1:9/a", here, name=None, actor="test")  # Beta knows us
        view, _ = beta.federation.joint.propose(
            kind="embargo",
            reason="both co-ops hold back pay data",
            threshold=2,
            coops=[here],
            ends_at=beta.now() + 86_400 * 30,
            actor=Actor("bea", admin=True),
        )
        receipt = site.node.federation.book.joint.receive(
            beta.federation.joint_store.actions(), beta.federation.joint_store.statements()
        )
        assert receipt.refused == (), receipt
        listed = site.client.get(f"{ACTIONS}/{view.id}").json()
        assert listed["status"] == "pending" and listed["bound_here"] is False
        assert listed["here"] == "not bound: this co-op did not sign"
        assert listed["proposer_name"] == "Beta"
        assert [(c["name"], c["signed"]) for c in listed["coops"] if not c["self"]] == [("Beta", True)]
        page = site.client.get("/federation/actions", headers=HTML).text
        assert "not bound: this co-op did not sign" in page and "Beta" in page

        signed = site.client.post(f"{ACTIONS}/{view.id}/sign", headers=site.admin)
        assert signed.status_code == 200, signed.text
        action = signed.json()["action"]
        assert action["status"] == "active" and action["bound_here"] is True
        assert sorted(s["name"] for s in action["signers"]) == ["Beta", "Unit Co-op"]
    finally:
        beta.close()


def _from_beta(site: Site, beta: Node, *, name: str | None, **action: Any) -> str:
    """Beta (pinned here, ``name`` given or not) proposes ``action`` naming this co-op; this node
    takes Beta's manifests and joint documents as gossip would bring them."""
    here = site.node.identity.node_id
    site.node.federation.add_peer("http://127.0.0.1:9", beta.identity.node_id, name=name, actor="test")
    beta.federation.issue(force=True)
    chain = beta.federation.store.chain_after(beta.identity.node_id, 0, 1000)
    site.node.federation.book.receive(chain, now=beta.now())
    beta.federation.add_peer("http://127.0.0.1:9/a", here, name=None, actor="test")  # Beta knows us
    view, _ = beta.federation.joint.propose(
        reason="both co-ops act together",
        threshold=2,
        coops=[here],
        ends_at=beta.now() + 86_400 * 30,
        actor=Actor("bea", admin=True),
        **action,
    )
    receipt = site.node.federation.book.joint.receive(
        beta.federation.joint_store.actions(), beta.federation.joint_store.statements()
    )
    assert receipt.refused == (), receipt
    return view.id


def test_joint_http_a_peer_pinned_without_a_name_is_named_as_its_manifests_say(
    site: Site, tmp_path: Path
) -> None:
    beta = make_node(tmp_path / "beta", name="Beta")
    try:
        action = _from_beta(site, beta, name=None, kind="embargo")
        listed = site.client.get(f"{ACTIONS}/{action}").json()
        assert listed["proposer_name"] == "Beta"
        assert [c["name"] for c in listed["coops"] if not c["self"]] == ["Beta"]
        assert [s["name"] for s in listed["signers"]] == ["Beta"]
        csrf = _signed_in(site.client, _token(site.admin))
        page = site.client.get("/federation/actions", headers=HTML).text
        assert "unnamed" not in page
        # The propose form offers Beta by name as a checkbox; ticking it names Beta.
        box = re.search(r'<input type="checkbox" id="(coop-\d+)" name="coops" value="([0-9a-f]{64})"', page)
        assert box and box.group(2) == beta.identity.node_id
        assert re.search(rf'<label for="{box.group(1)}">Beta <span class="mono">', page)
        form = {
            "csrf": csrf,
            "kind": "freeze",
            "coops": beta.identity.node_id,
            "review_at": _day(10),
            "threshold": "2",
            "reason": "a freeze with Beta",
        }
        posted = site.client.post("/federation/actions", data=form, headers=HTML, follow_redirects=False)
        assert posted.status_code == 303, posted.text
        (mine,) = [a for a in site.client.get(ACTIONS).json()["actions"] if a["kind"] == "freeze"]
        assert sorted(c["id"] for c in mine["coops"]) == sorted(
            [beta.identity.node_id, site.node.identity.node_id]
        )
    finally:
        beta.close()


def test_joint_page_signing_by_a_vote_says_so_links_it_and_hides_the_sign_button(
    site: Site, tmp_path: Path
) -> None:
    """A preference shift needs the members' vote here: the admin's Sign opens proposal N; the
    notice says so with a link to it, the card says the vote is open, and offers no Sign again."""
    beta = make_node(tmp_path / "beta", name="Beta")
    try:
        action = _from_beta(site, beta, name="Beta", kind="preference", ai_use="train-ai=n")
        csrf = _signed_in(site.client, _token(site.admin))
        page = site.client.get("/federation/actions", headers=HTML).text
        assert f'action="/federation/actions/{action}/sign"' in page
        posted = site.client.post(
            f"/federation/actions/{action}/sign", data={"csrf": csrf}, headers=HTML, follow_redirects=False
        )
        assert posted.status_code == 303, posted.text
        location = posted.headers["location"]
        found = re.fullmatch(
            rf"/federation/actions\?proposal=(\d+)&done=joint-sign-vote#a-{action[:16]}", location
        )
        assert found, location
        number = int(found.group(1))
        page = site.client.get(location.split("#")[0], headers=HTML).text
        notice = re.search(r'<div class="notice" role="status">(.*?)</div>', page, re.S)
        assert notice and "put to the members' vote" in html.unescape(notice.group(1))
        assert f'<a href="/governance#p{number}">proposal {number}</a>' in notice.group(1)
        assert f"members' vote open: proposal {number}" in html.unescape(page)  # the card's "here"
        assert f'action="/federation/actions/{action}/sign"' not in page
        again = site.client.get(f"{ACTIONS}/{action}").json()
        assert again["vote"] == number and again["vote_on"] == "sign"
        assert again["here"] == f"not bound: this co-op did not sign; members' vote open: proposal {number}"
        # A proposal number is all the URL may carry: anything else shows the plain notice.
        plain = site.client.get("/federation/actions?proposal=<b>&done=joint-sign-vote", headers=HTML).text
        assert "<b>" not in plain
        assert "put to the members' vote on the governance page" in html.unescape(plain)
    finally:
        beta.close()


def test_joint_page_signing_at_once_says_signed(site: Site, tmp_path: Path) -> None:
    beta = make_node(tmp_path / "beta", name="Beta")
    try:
        action = _from_beta(site, beta, name="Beta", kind="embargo")
        csrf = _signed_in(site.client, _token(site.admin))
        posted = site.client.post(
            f"/federation/actions/{action}/sign", data={"csrf": csrf}, headers=HTML, follow_redirects=False
        )
        assert posted.status_code == 303, posted.text
        assert posted.headers["location"] == f"/federation/actions?done=joint-signed#a-{action[:16]}"
        page = site.client.get("/federation/actions?done=joint-signed", headers=HTML).text
        assert "This co-op signed the joint action." in page and "members' vote" not in html.unescape(page)
    finally:
        beta.close()
