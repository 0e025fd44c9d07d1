"""A member's listing names each chat: its title, else its first user line; nothing once erased."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from litestar.testing import TestClient

from coop.node.contributions import repository as contrib
from coop.node.contributions import rights
from coop.node.contributions.repository import TITLE_CHARS, chat_title
from coop.node.contributions.submission import ContributionState
from coop.node.http.app import create_app
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process


def _said(role: str, content: str) -> contrib._Said:
    return contrib._Said(role=role, content=content)


TITLES = [
    ("title-wins", "Sourdough starter", [_said("user", "How do I feed it?")], "Sourdough starter"),
    ("title-spaces-folded", "  Sour\n dough  ", [], "Sour dough"),
    ("blank-title-falls-back", "   ", [_said("user", "Feed it daily?")], "Feed it daily?"),
    (
        "first-user-line",
        None,
        [
            _said("system", "Be brief."),
            _said("user", "\n  First line  \nsecond line"),
            _said("assistant", "ok"),
        ],
        "First line",
    ),
    ("empty-user-message-skipped", None, [_said("user", "  "), _said("user", "Second")], "Second"),
    ("long-line-cut", None, [_said("user", "x" * 200)], "x" * TITLE_CHARS),
    ("nothing-said", None, [_said("assistant", "hello")], None),
]


@pytest.mark.parametrize(
    ("title", "messages", "expected"), [c[1:] for c in TITLES], ids=[c[0] for c in TITLES]
)
def test_chat_title_is_the_title_else_the_first_user_line(
    title: str | None, messages: list[contrib._Said], expected: str | None
) -> None:
    assert chat_title(title, messages) == expected


def _export(title: str, question: str) -> str:
    chat = {
        "title": title,
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "Here is how."}],
    }
    return json.dumps({"chat": chat})


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return make_node(tmp_path)


def _titles(node: Node, member_id: int) -> dict[str, str | None]:
    return {
        v.uid: v.title for v in node.store.read(lambda c: contrib.list_member_contributions(c, member_id))
    }


def test_member_listing_titles_each_chat_while_its_text_is_held(node: Node) -> None:
    member, _ = make_member(node)
    titled = contribute(
        node, member, text=_export("Bread at altitude", "Why is my loaf flat?"), format="openwebui"
    )
    plain = contribute(node, member, text="User: What is a levain?\nAssistant: A starter.")
    assert _titles(node, member.id) == {titled: "Bread at altitude", plain: "What is a levain?"}

    process(node)  # the raw submission is erased: the title comes from the redacted record's text
    assert _titles(node, member.id) == {titled: "Why is my loaf flat?", plain: "What is a levain?"}

    node.store.write(lambda c: rights.withdraw_contribution(c, uid=plain, member=member, now=node.now()))
    assert _titles(node, member.id) == {titled: "Why is my loaf flat?", plain: None}


def test_member_listing_title_after_processing_is_redacted(node: Node) -> None:
    member, _ = make_member(node)
    uid = contribute(node, member, text="User: mail me at ada.lovelace@example.org please\nAssistant: Sure.")
    process(node)
    title = _titles(node, member.id)[uid]
    assert title is not None and "ada.lovelace@example.org" not in title


def test_admin_queue_carries_no_title(node: Node) -> None:
    member, _ = make_member(node)
    contribute(node, member)
    (view,) = node.store.read(lambda c: contrib.list_by_state(c, ContributionState.WAITING))
    assert not hasattr(view, "title")


def test_http_my_contributions_and_export_carry_the_title(node: Node) -> None:
    member, token = make_member(node)
    other, _ = make_member(node)
    uid = contribute(
        node, member, text=_export("Bread at altitude", "Why is my loaf flat?"), format="openwebui"
    )
    contribute(node, other, text=_export("Someone else's chat", "Not yours"), format="openwebui")
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(node, background=False)) as client:
        listed = client.get("/api/v1/me/contributions", headers=headers)
        export = client.get("/api/v1/me/contributions.jsonl", headers=headers)
        schema = client.get("/schema/openapi.json")
    assert listed.status_code == 200, listed.text
    assert [(item["uid"], item["title"]) for item in listed.json()] == [(uid, "Bread at altitude")]
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert [line["contribution"]["title"] for line in lines] == ["Bread at altitude"]
    answer = schema.json()["paths"]["/api/v1/me/contributions"]["get"]["responses"]["200"]
    item = answer["content"]["application/json"]["schema"]["items"]
    assert "title" in item["properties"]
