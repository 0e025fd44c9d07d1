"""`coop access list|approve|refuse|revoke|register DIR [--json]` as the local admin."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from coop.governance import apply_changes
from coop.node.cli import main
from coop.node.collective.settings import Actor, current_settings, store_settings
from coop.node.members.accounts import Member, Role
from coop.node.members.repository import add_member, member_by_name
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process

GATED = "CC-BY-4.0"


def _builder(node: Node, name: str) -> Member:
    member, _ = node.store.write(
        lambda c: add_member(c, name=name, role=Role.BUILDER, salt=node.salt, now=node.now())
    )
    return member


def _ask(node: Node, member: Member, model: str) -> int:
    view = node.access.request(
        member,
        who=f"{member.name} of Example Lab",
        purpose="evaluate a tenants' letters assistant",
        model=model,
        open_weights=True,
        buckets=(GATED,),
        accept_terms=True,
    )
    return int(view.id)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    node = make_node(tmp_path)
    try:
        node.change_settings({"access.gated": [GATED]}, actor=Actor("test", admin=True))
        _ask(node, _builder(node, "bea"), "example/bea-7b")
        _ask(node, _builder(node, "otto"), "example/otto-1b")
        return node.data.root
    finally:
        node.close()


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_access_list_shows_every_request_in_text_and_json(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["access", "list", str(root)]) == 0
    text = capsys.readouterr().out
    assert "example/bea-7b" in text and "example/otto-1b" in text and "pending" in text
    listed = _json(capsys, "access", "list", str(root))
    assert {r["model"] for r in listed} == {"example/bea-7b", "example/otto-1b"}
    assert {r["state"] for r in listed} == {"pending"}


def test_access_approve_then_revoke_changes_the_state_and_lists_by_state(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = min(r["id"] for r in _json(capsys, "access", "list", str(root)))
    approved = _json(capsys, "access", "approve", str(root), str(first))
    assert approved["request"]["state"] == "approved" and approved["proposal"] is None
    assert [r["id"] for r in _json(capsys, "access", "list", str(root), "--state", "approved")] == [first]
    revoked = _json(capsys, "access", "revoke", str(root), str(first))
    assert revoked["request"]["state"] == "revoked"


def test_access_refuse_records_the_local_admin(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    last = max(r["id"] for r in _json(capsys, "access", "list", str(root)))
    refused = _json(capsys, "access", "refuse", str(root), str(last))
    assert refused["request"]["state"] == "refused"
    assert refused["request"]["decided_by"] == "local-admin"


def test_access_approve_under_a_vote_rule_opens_a_proposal(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = Node(root)
    try:
        # A change of the rules itself needs a vote: the test stores the outcome directly.
        def vote_rule(conn: sqlite3.Connection) -> None:
            current = current_settings(conn).settings
            changed = apply_changes(current, {"rules.classes.access.admin_alone": False})
            store_settings(conn, changed, at=node.now(), actor="test", via="proposal 0")

        node.store.write(vote_rule)
    finally:
        node.close()
    first = min(r["id"] for r in _json(capsys, "access", "list", str(root)))
    assert main(["access", "approve", str(root), str(first)]) == 0
    assert "proposal" in capsys.readouterr().out
    opened = _json(capsys, "access", "list", str(root), "--state", "voting")
    assert [r["id"] for r in opened] == [first] and opened[0]["proposal_id"]


def test_access_decision_on_an_unknown_request_is_a_not_found_error(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["access", "approve", str(root), "999", "--json"])
    assert code != 0
    assert json.loads(capsys.readouterr().err)["kind"] == "not-found"


def test_access_register_is_empty_then_lists_downloads(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _json(capsys, "access", "register", str(root)) == []
    assert main(["access", "register", str(root)]) == 0
    assert "no download" in capsys.readouterr().out
    node = Node(root)
    try:
        contributor, _ = make_member(node)
        contribute(node, contributor, license=GATED)
        process(node)
        summary = node.cut_release()
        path = next(b for b in summary.buckets if b.license.value == GATED).files[0].path
        bea = next(r for r in node.access.requests(member=None) if r.member == "bea")
        node.access.approve(bea.id, actor=Actor("test", admin=True))
        grantee = node.store.read(lambda c: member_by_name(c, "bea"))
        assert grantee is not None
        signed = node.access.mint_url(bea.id, grantee, release="v1", path=path)
        query = parse_qs(urlsplit(signed.url).query)
        node.access.download(
            grantee,
            request_id=bea.id,
            release="v1",
            path=path,
            expires_at=signed.expires_at,
            signature=query["sig"][0],
        )
    finally:
        node.close()
    rows = _json(capsys, "access", "register", str(root))
    assert [(r["who"], r["request_id"], r["release"], r["path"]) for r in rows] == [
        ("bea", bea.id, "v1", path)
    ]
    assert main(["access", "register", str(root)]) == 0
    assert f"bea grant #{bea.id} v1/{path}" in capsys.readouterr().out


def _vote_rule(root: Path) -> None:
    node = Node(root)
    try:

        def vote_rule(conn: sqlite3.Connection) -> None:
            current = current_settings(conn).settings
            changed = apply_changes(current, {"rules.classes.access.admin_alone": False})
            store_settings(conn, changed, at=node.now(), actor="test", via="proposal 0")

        node.store.write(vote_rule)
        make_member(node)  # an electorate
    finally:
        node.close()


def test_access_revoke_says_whose_access_ended_and_list_says_who_decided(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = min(r["id"] for r in _json(capsys, "access", "list", str(root)))
    assert main(["access", "approve", str(root), str(first)]) == 0
    assert capsys.readouterr().out.startswith(
        f"request {first} approved: bea of Example Lab's access to {GATED}"
    )
    assert main(["access", "revoke", str(root), str(first)]) == 0
    said = capsys.readouterr().out.strip()
    assert said == f"request {first} revoked: bea of Example Lab's access to {GATED} ended"
    assert main(["access", "list", str(root), "--state", "revoked"]) == 0
    line = capsys.readouterr().out
    assert "approved by local-admin at " in line and "; revoked by local-admin at " in line
    assert _json(capsys, "access", "list", str(root), "--state", "revoked")[0]["revoked_by"] == "local-admin"


def test_access_approve_again_under_a_vote_says_the_members_decide(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _vote_rule(root)
    first = min(r["id"] for r in _json(capsys, "access", "list", str(root)))
    assert main(["access", "approve", str(root), str(first)]) == 0
    opened = capsys.readouterr().out
    assert "the members decide" in opened and opened.startswith(f"request {first}:")
    proposal = _json(capsys, "access", "list", str(root), "--state", "voting")[0]["proposal_id"]
    assert main(["access", "approve", str(root), str(first)]) != 0
    said = capsys.readouterr().err
    assert f"proposal {proposal} is open: the members decide" in said, said
    assert "is voting" not in said


@pytest.mark.parametrize("number", ["9" * 30, "9" * 5000, "0"])
def test_access_huge_request_numbers_are_usage_errors(
    root: Path, capsys: pytest.CaptureFixture[str], number: str
) -> None:
    for decision in ("approve", "refuse", "revoke"):
        code = main(["access", decision, str(root), number])
        assert code == 2, capsys.readouterr()
        assert "REQUEST" in capsys.readouterr().err


def test_settings_set_a_list_with_a_bare_word_shows_how_to_write_the_list(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["settings", "set", str(root), "access.gated=CC-BY-SA-4.0"]) != 0
    said = capsys.readouterr().err
    assert """'access.gated=["CC-BY-SA-4.0"]'""" in said, said
    assert main(["settings", "set", str(root), 'access.gated=["CC-BY-SA-4.0"]']) == 0
