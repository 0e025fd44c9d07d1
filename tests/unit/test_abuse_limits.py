"""Abuse limits (issue 11, item 7): what one member or integration can make the node keep or do.

Proposals are bounded in size and in number per member (open at once, opened a day) and the
governance page in length; an ingest keeps only the user fields the node uses, bounded; the
redaction preview is bounded and runs off the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from coop.node.collective.proposals import MAX_OPEN_PER_MEMBER, MAX_OPENED_PER_DAY
from coop.node.collective.settings import Actor
from coop.node.errors import RateLimitedError
from coop.node.http import contributions as contributions_module
from coop.node.http.app import create_app
from coop.node.http.contributions import MAX_PREVIEW_CHARS
from coop.node.members.repository import add_integration
from coop.node.runtime import Node

from factories import make_member, make_node

CHANGE = {"defaults.eval": "n"}


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


def _propose(client: TestClient[Litestar], token: str, **body: Any) -> httpx.Response:
    payload = {"changes": CHANGE, "reason": "opt-in eval", **body}
    return client.post("/api/v1/governance/proposals", json=payload, headers=_auth(token))


# -- (a) proposals --------------------------------------------------------------------------


def test_abuse_proposal_with_an_oversized_value_is_refused_naming_it(
    node: Node, client: TestClient[Litestar]
) -> None:
    _, token = make_member(node)
    long_tag = {"embargo": {"on": True, "tags": ["x" * 5000], "languages": []}}
    refused = _propose(client, token, changes=long_tag)
    assert refused.status_code == 413, refused.text
    assert refused.json()["field"] == "embargo.tags[0]"


def test_abuse_proposal_with_oversized_changes_is_refused(node: Node, client: TestClient[Litestar]) -> None:
    _, token = make_member(node)
    many = {"embargo": {"on": True, "tags": [f"tag-{i}" for i in range(2000)], "languages": []}}
    refused = _propose(client, token, changes=many)
    assert refused.status_code == 413, refused.text
    assert refused.json()["field"] == "changes"
    too_long = _propose(client, token, reason="why " * 1000)
    assert too_long.status_code == 422 and too_long.json()["field"] == "reason"
    assert node.store.read(lambda c: c.execute("SELECT count(*) FROM proposals").fetchone()[0]) == 0


def test_abuse_open_proposals_per_member_are_capped_with_429(
    node: Node, client: TestClient[Litestar]
) -> None:
    _, token = make_member(node)
    _, other = make_member(node)
    for _ in range(MAX_OPEN_PER_MEMBER):
        assert _propose(client, token).status_code == 201
    refused = _propose(client, token)
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) > 0
    assert _propose(client, other).status_code == 201, "another member is not held by it"


def test_abuse_proposals_opened_a_day_are_capped_even_once_closed(node: Node) -> None:
    member, _ = make_member(node)
    actor = Actor(member.name, admin=False)
    for _ in range(MAX_OPENED_PER_DAY):
        node.propose(CHANGE, reason="again", actor=actor)
        node.store.write(lambda c: c.execute("UPDATE proposals SET status = 'expired'"))
    with pytest.raises(RateLimitedError) as refused:
        node.propose(CHANGE, reason="again", actor=actor)
    assert refused.value.retry_after > 0


def test_abuse_governance_page_shows_one_bounded_page_of_proposals(
    node: Node, client: TestClient[Litestar]
) -> None:
    for _ in range(5):
        member, _ = make_member(node)
        for _ in range(MAX_OPEN_PER_MEMBER):
            node.propose(CHANGE, reason="r" * 2000, actor=Actor(member.name, admin=False))
    page = client.get("/governance")
    assert page.status_code == 200
    assert page.text.count('class="card" id="p') == 20
    assert 'href="/governance?before=6#proposals"' in page.text
    older = client.get("/governance?before=6")
    assert older.text.count('class="card" id="p') == 5
    listed = client.get("/api/v1/governance/proposals?limit=3", headers=_auth(make_member(node)[1]))
    assert [p["id"] for p in listed.json()] == [25, 24, 23]


# -- (b) ingest ------------------------------------------------------------------------------


def _ingest(client: TestClient[Litestar], key: str, user: dict[str, str]) -> httpx.Response:
    body = {"user": user, "label": "good", "consent": True, "chat": "User: hello\nAssistant: hi there"}
    return client.post("/api/v1/contributions/ingest", json=body, headers=_auth(key))


@pytest.mark.parametrize(
    ("field", "user"),
    [
        ("user.id", {"id": "u" * 1_000_000}),
        ("user.email", {"id": "u-1", "email": "e" * 500_000 + "@example.org"}),
        ("user.name", {"id": "u-1", "name": "n" * 10_000}),
    ],
)
def test_abuse_ingest_refuses_an_oversized_user_field_naming_it(
    node: Node, client: TestClient[Litestar], field: str, user: dict[str, str]
) -> None:
    _, key = node.store.write(lambda c: add_integration(c, name="owui", now=node.now()))
    refused = _ingest(client, key, user)
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == field
    assert node.store.read(lambda c: c.execute("SELECT count(*) FROM members").fetchone()[0]) == 0


def test_abuse_ingest_keeps_no_email(node: Node, client: TestClient[Litestar]) -> None:
    _, key = node.store.write(lambda c: add_integration(c, name="owui", now=node.now()))
    stored = _ingest(client, key, {"id": "u-7", "name": "Robin", "email": "robin@example.org"})
    assert stored.status_code == 201, stored.text
    row = node.store.read(
        lambda c: c.execute("SELECT email FROM members WHERE external_id = 'u-7'").fetchone()
    )
    assert row == (None,)


# -- (c) the redaction preview ----------------------------------------------------------------


def test_abuse_preview_over_its_cap_is_refused_naming_text(node: Node, client: TestClient[Litestar]) -> None:
    _, token = make_member(node)
    body = {"text": "a" * (MAX_PREVIEW_CHARS + 1)}
    refused = client.post("/api/v1/redact/preview", json=body, headers=_auth(token))
    assert refused.status_code == 413 and refused.json()["field"] == "text"


def test_abuse_preview_runs_off_the_event_loop_so_healthz_answers_meanwhile(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a preview is inside the redactor, /healthz completes; then the preview does (ordering)."""
    _, token = make_member(node)
    real = contributions_module.redact
    entered, gate = threading.Event(), threading.Event()
    released: list[bool] = []

    def held_redact(text: str) -> Any:
        entered.set()
        released.append(gate.wait(timeout=10))  # on the loop, /healthz could not set it: False
        return real(text)

    monkeypatch.setattr(contributions_module, "redact", held_redact)
    app = create_app(node, background=False)

    async def scenario() -> tuple[int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            preview = asyncio.create_task(
                http.post("/api/v1/redact/preview", json={"text": "call me"}, headers=_auth(token))
            )
            for _ in range(1000):  # bounded: until the preview is inside the redactor
                if entered.is_set():
                    break
                await asyncio.sleep(0.01)
            health = await http.get("/healthz")
            gate.set()
            return health.status_code, (await preview).status_code

    assert asyncio.run(scenario()) == (200, 200)
    assert released == [True], "the preview held the event loop: /healthz waited for it"
