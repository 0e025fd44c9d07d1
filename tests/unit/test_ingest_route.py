"""The hot intake route (IngestRoute): answered in front of the framework, exactly as the framework's route answers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from litestar.types import Receive, Scope, Send

from coop.governance import License
from coop.node.collective.settings import store_settings
from coop.node.http.app import create_app
from coop.node.http.clientaddr import TrustedProxies
from coop.node.http.contributions import INLINE_BODY_BYTES
from coop.node.http.ingest import IngestRoute
from coop.node.runtime import Node
from coop.node.scheduler import Scheduler

from factories import chat_text, make_member, make_node

PATH = "/api/v1/contributions"


class Counted:
    """Wraps the framework behind the route: counts the requests that reached it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Node, Litestar, Counted, str]]:
    node = make_node(tmp_path)
    try:
        _, token = make_member(node)
        app = create_app(node, background=False)
        proxies = app.asgi_handler
        assert isinstance(proxies, TrustedProxies)
        route = proxies.app
        assert isinstance(route, IngestRoute)
        framework = Counted(route.app)
        route.app = framework
        yield node, app, framework, token
    finally:
        node.close()


def _body(topic: str, **extra: object) -> bytes:
    return json.dumps({"label": "good", "consent": True, "content": chat_text(topic), **extra}).encode()


def _post(http: TestClient[Any], body: bytes, token: str | None, *, framework: bool, **headers: str) -> Any:
    """POST the body with a declared length (the fast route) or chunked (the framework's route)."""
    sent = {"content-type": "application/json", **headers}
    if token is not None:
        sent["authorization"] = f"Bearer {token}"
    content: Any = iter([body]) if framework else body
    return http.post(PATH, content=content, headers=sent)


def _rows(node: Node) -> int:
    (n,) = node.store.read(lambda c: c.execute("SELECT count(*) FROM contributions").fetchone())
    return int(n)


def test_ingest_route_a_contribution_with_a_declared_length_never_reaches_the_framework(
    served: tuple[Node, Litestar, Counted, str],
) -> None:
    node, app, framework, token = served
    with TestClient(app) as http:
        fast = _post(http, _body("bread"), token, framework=False)
        slow = _post(http, _body("rivers"), token, framework=True)
    assert (fast.status_code, slow.status_code) == (201, 201)
    assert framework.paths == [PATH]  # only the chunked one
    assert _rows(node) == 2


def test_ingest_route_answers_with_the_frameworks_status_headers_and_fields(
    served: tuple[Node, Litestar, Counted, str],
) -> None:
    _node, app, _, token = served
    with TestClient(app) as http:
        fast = _post(http, _body("bread"), token, framework=False)
        slow = _post(http, _body("rivers"), token, framework=True)
    for answer in (fast, slow):
        assert answer.status_code == 201
        assert answer.headers["location"] == f"{PATH}/{answer.json()['uid']}"
        assert answer.headers["cache-control"] == "private, no-store"  # the app's before_send hooks
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert sorted(fast.headers.keys()) == sorted(slow.headers.keys())
    assert fast.headers["content-type"] == slow.headers["content-type"]
    assert sorted(fast.json()) == sorted(slow.json())
    assert uuid.UUID(fast.json()["uid"]).version == 7


@pytest.mark.parametrize(
    ("case", "body", "token", "headers", "status", "field"),
    [
        ("no credential", _body("x"), None, {}, 401, "Authorization"),
        ("wrong media type", _body("x"), "member", {"content-type": "text/plain"}, 415, "Content-Type"),
        ("unknown label", _body("x", label="great"), "member", {}, 422, "label"),
        ("no consent", _body("x", consent=False), "member", {}, 422, "consent"),
        (
            "repeated key in the body",
            b'{"label":"good","consent":true,"content":"User: hi","label":"fail"}',
            "member",
            {},
            400,
            "label",
        ),
        (
            # Content sent as a string holding a file's text is still read for repeated keys.
            "repeated key inside file text",
            json.dumps(
                {"label": "good", "consent": True, "content": '{"messages":[{"role":"user","role":"x"}]}'}
            ).encode(),
            "member",
            {},
            None,
            None,
        ),
        ("bad idempotency key", _body("x"), "member", {"idempotency-key": ""}, 422, "Idempotency-Key"),
    ],
)
def test_ingest_route_refuses_as_the_framework_refuses(
    served: tuple[Node, Litestar, Counted, str],
    case: str,
    body: bytes,
    token: str | None,
    headers: dict[str, str],
    status: int | None,
    field: str | None,
) -> None:
    node, app, framework, member_token = served
    credential = member_token if token == "member" else None
    with TestClient(app) as http:
        fast = _post(http, body, credential, framework=False, **headers)
        slow = _post(http, body, credential, framework=True, **headers)
    assert framework.paths == [PATH], case
    assert fast.status_code == slow.status_code, case
    assert fast.status_code >= 400, case
    if status is not None:
        assert fast.status_code == status, case
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/problem+json"
    problem = fast.json()
    assert problem == slow.json(), case
    if field is not None:
        assert problem["field"] == field, case
    assert _rows(node) == 0, case


def test_ingest_route_idempotency_key_answers_the_first_contribution_and_refuses_another_body(
    served: tuple[Node, Litestar, Counted, str],
) -> None:
    node, app, framework, token = served
    with TestClient(app) as http:
        first = _post(http, _body("bread"), token, framework=False, **{"idempotency-key": "k1"})
        again = _post(http, _body("bread"), token, framework=False, **{"idempotency-key": "k1"})
        other = _post(http, _body("rivers"), token, framework=False, **{"idempotency-key": "k1"})
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 409)
    assert again.json()["uid"] == first.json()["uid"] and again.json()["created"] is False
    assert framework.paths == []
    assert _rows(node) == 1


def test_ingest_route_leaves_large_bodies_and_other_routes_to_the_framework(
    served: tuple[Node, Litestar, Counted, str],
) -> None:
    _node, app, framework, token = served
    large = _body("bread", note="n" * 10, tags=["t"] * 1, language="en")
    large = large[:-1] + b',"correction":"' + b"c" * INLINE_BODY_BYTES + b'"}'
    with TestClient(app) as http:
        big = _post(http, large, token, framework=False)
        http.get("/healthz")
        http.get(PATH)  # no GET here: the framework's 405
    assert big.status_code in (201, 413)
    assert framework.paths == [PATH, "/healthz", PATH]


def test_ingest_route_a_settings_change_by_another_process_applies_to_the_next_contribution(
    served: tuple[Node, Litestar, Counted, str],
) -> None:
    node, app, framework, token = served
    other = Node(node.data.root)  # the CLI, say: its own connection, nothing the server's cache would see
    try:
        with TestClient(app) as http:
            before = _post(http, _body("bread"), token, framework=False)
            # As a passed vote stores them: new settings, the default licence changed.
            current = other.settings().settings
            changed = msgspec.structs.replace(
                current, defaults=msgspec.structs.replace(current.defaults, license=License.CC0)
            )
            other.store.write(
                lambda c: store_settings(c, changed, at=other.now(), actor="vote", via="proposal")
            )
            after = _post(http, _body("rivers"), token, framework=False)
    finally:
        other.close()
    assert (before.status_code, after.status_code) == (201, 201)
    assert framework.paths == []
    licences = dict(node.store.read(lambda c: c.execute("SELECT uid, license FROM contributions").fetchall()))
    assert licences == {before.json()["uid"]: "CC-BY-SA-4.0", after.json()["uid"]: "CC0-1.0"}


class Recording(Scheduler):
    """A scheduler that runs nothing and notes what it was asked for."""

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.asked: list[str] = []

    def poke(self) -> None:
        self.asked.append("poke")

    def wake(self) -> None:
        self.asked.append("wake")


def test_ingest_route_a_new_contribution_wakes_the_pipeline_and_asks_for_no_revision(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    try:
        _, token = make_member(node)
        scheduler = Recording(node)
        app = create_app(node, background=False, scheduler=scheduler)
        with TestClient(app) as http:
            fast = _post(http, _body("bread"), token, framework=False)
            slow = _post(http, _body("rivers"), token, framework=True)
            assert scheduler.asked == ["wake", "wake"]
            gone = http.delete(f"{PATH}/{fast.json()['uid']}", headers={"authorization": f"Bearer {token}"})
    finally:
        node.close()
    assert (fast.status_code, slow.status_code, gone.status_code) == (201, 201, 200)
    assert scheduler.asked == ["wake", "wake", "poke"]  # a withdrawal leaves a revision pending
