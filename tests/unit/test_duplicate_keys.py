"""A JSON key twice in one object is refused (400 naming it), in every body the node decodes.

msgspec, like most parsers, keeps the last value: ``{"consent": false, "consent": true}`` was
stored as consent (201).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from litestar.testing import TestClient

from coop.node.errors import MalformedError
from coop.node.http.app import create_app
from coop.node.http.problems import refuse_duplicate_keys
from coop.node.members.repository import add_integration
from coop.node.runtime import Node

from factories import make_member, make_node


@dataclass
class Api:
    node: Node
    client: TestClient  # type: ignore[type-arg]
    member: dict[str, str]
    admin: dict[str, str]
    integration: dict[str, str]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    node = make_node(tmp_path_factory.mktemp("dupkeys"))
    _, member = make_member(node, "sam")
    _, admin = make_member(node, "ada", admin=True)
    _, key = node.store.write(lambda c: add_integration(c, name="owui", now=node.now()))
    try:
        with TestClient(create_app(node, background=False)) as client:
            yield Api(
                node,
                client,
                {"Authorization": f"Bearer {member}"},
                {"Authorization": f"Bearer {admin}"},
                {"Authorization": f"Bearer {key}"},
            )
    finally:
        node.close()


_CHAT = '"format": "text", "content": "User: hi there\\nAssistant: hello, how can I help?"'

# (who, method, path, body with a key twice, the field named)
CASES = [
    ("member", "post", "/api/v1/contributions",
     '{"label": "good", ' + _CHAT + ', "consent": false, "consent": true}', "consent"),
    ("integration", "post", "/api/v1/contributions/ingest",
     '{"user": {"id": "u1", "id": "u2"}, "label": "good", "consent": true, "chat": {}}', "user.id"),
    ("member", "patch", "/api/v1/contributions/0190f000-0000-7000-8000-000000000000",
     '{"correction": "a", "correction": "b"}', "correction"),
    ("member", "post", "/api/v1/redact/preview", '{"text": "a", "text": "b"}', "text"),
    ("integration", "post", "/api/v1/metrics/events",
     '{"channel": "openwebui", "stage": "eligible", "count": 1, "count": 2}', "count"),
    ("admin", "put", "/api/v1/governance/settings",
     '{"changes": {"quality_freeze": false, "quality_freeze": true}}', "changes.quality_freeze"),
    ("member", "post", "/api/v1/governance/proposals",
     '{"changes": {"quality_freeze": true}, "reason": "a", "reason": "b"}', "reason"),
    ("member", "post", "/api/v1/governance/proposals/1/votes", '{"choice": "no", "choice": "yes"}', "choice"),
    ("admin", "post", "/api/v1/governance/payouts",
     '{"release": "v1", "amount": "1.00", "currency": "EUR", "currency": "USD"}', "currency"),
]  # fmt: skip


@pytest.mark.parametrize(("who", "method", "path", "body", "field"), CASES)
def test_a_key_twice_is_a_400_naming_it(
    api: Api, who: str, method: str, path: str, body: str, field: str
) -> None:
    headers = {**getattr(api, who), "Content-Type": "application/json"}
    response = api.client.request(method.upper(), path, headers=headers, content=body.encode())
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["field"] == field, problem
    assert "more than once" in problem["detail"]


def test_nothing_is_stored_from_a_body_with_a_key_twice(api: Api) -> None:
    headers = {**api.member, "Content-Type": "application/json"}
    body = '{"label": "good", ' + _CHAT + ', "consent": false, "consent": true}'
    api.client.post("/api/v1/contributions", headers=headers, content=body.encode())
    assert api.client.get("/api/v1/me/contributions", headers=api.member).json() == []


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"a": 1, "a": 1}', "a"),
        ('{"a": {"b": [1, {"c": 1, "d": {"e": 1, "e": 2}}]}}', "a.b[1].d.e"),
        ('[{"x": 1}, {"y": 1, "y": 2}]', "[1].y"),
    ],
)
def test_duplicates_are_found_at_any_depth(text: str, field: str) -> None:
    with pytest.raises(MalformedError) as caught:
        refuse_duplicate_keys(text)
    assert caught.value.field == field


@pytest.mark.parametrize("text", ['{"a": 1, "b": {"a": 1}}', '[{"a": 1}, {"a": 2}]', "{}", "[]", '"x"', "1"])
def test_the_same_key_in_different_objects_is_fine(text: str) -> None:
    refuse_duplicate_keys(text)


def test_the_web_live_preview_refuses_a_key_twice(api: Api, tmp_path: Path) -> None:
    from coop.node.members.sessions import find_session, start_session
    from coop.node.web.sessions import COOKIE

    member, _ = make_member(api.node, "web-sam")
    now = api.node.now()
    session_id = api.node.store.write(lambda c: start_session(c, member, now=now))
    session = api.node.store.read(lambda c: find_session(c, session_id, now=now))
    assert session is not None
    api.client.cookies.set(COOKIE, session_id)
    try:
        response = api.client.post(
            "/contribute/preview",
            content=b'{"text": "a", "text": "b"}',
            headers={"X-CSRF-Token": session.csrf, "Content-Type": "application/json", "Accept": "*/*"},
        )
    finally:
        api.client.cookies.clear()
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "text"


_HUGE = "9" * 5000  # over the standard parser's 4300-digit limit for int(): must not hide a repeat

# A number too long for the standard library's int() beside a repeated key: the check read
# nothing (a bypass, 201) or failed on the second pass (500).
BIG_NUMBER_CASES = [
    ('{"label": "good", "consent": false, "consent": true, "format": "messages", "content": '
     '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "ok"}], "n": ' + _HUGE + "}}",
     "consent"),
    ('{"label": "good", "consent": true, "format": "messages", "content": {"messages": [{"role": "user", '
     '"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}], "n": ' + _HUGE + "}}",
     "content.messages[0].role"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "field"), BIG_NUMBER_CASES)
def test_a_huge_number_does_not_hide_a_key_twice(api: Api, body: str, field: str) -> None:
    headers = {**api.member, "Content-Type": "application/json"}
    response = api.client.post("/api/v1/contributions", headers=headers, content=body.encode())
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('{"a": 1, "a": 1}', "a"),
        ('{"n": ' + _HUGE + ', "n": 1}', "n"),
        ('{"x": 1e999, "y": NaN, "y": 2}', "y"),
        ('{"a": [{"b": 1}], "c": {"d": {"e": 1, "e": 2}}}', "c.d.e"),
        ('{"a": 1}', None),
        ('{"n": ' + _HUGE + "}", None),
    ],
)
def test_duplicate_key_reads_structure_only(text: str, path: str | None) -> None:
    from coop.governance.canonical import duplicate_key

    assert duplicate_key(text) == path


def test_peer_messages_envelopes_and_manifests_refuse_a_key_twice() -> None:
    from coop.federation.errors import FederationError
    from coop.federation.protocol import PullRecords, _decode
    from coop.governance.envelope import open_envelope
    from coop.governance.errors import InvalidValueError

    with pytest.raises(FederationError, match="hashes"):
        _decode(PullRecords, b'{"hashes": ["a"], "hashes": ["b"]}')
    twice = b'{"payload": "e30=", "payloadType": "t", "payload": "W10=", "signatures": []}'
    with pytest.raises(InvalidValueError, match="payload"):
        open_envelope(twice, payload_type="t", max_bytes=1000)
