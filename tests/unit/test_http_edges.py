"""HTTP at its edges: HEAD wherever GET works, credentialed answers never cached, a body cut short is the
client's error (400), and a stranger's refused requests cannot flood the security log."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.testing import TestClient

from coop.node.http.app import create_app
from coop.node.peering.refusals import Refusal, record_refusal
from coop.node.runtime import Node

from factories import make_member, make_node


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Litestar, str]]:
    node = make_node(tmp_path_factory.mktemp("edges"))
    _, token = make_member(node, "ada", admin=True)
    app = create_app(node, background=False)
    try:
        yield node, app, token
    finally:
        node.close()


def _plain_get_paths(app: Litestar) -> list[str]:
    paths: set[str] = set()
    for route in app.routes:
        if "{" in route.path:
            continue
        for handler in getattr(route, "route_handlers", ()):
            if isinstance(handler, HTTPRouteHandler) and "GET" in handler.http_methods:
                paths.add(route.path)
    return sorted(paths)


def test_every_get_route_answers_head_with_the_same_status_and_headers(
    served: tuple[Node, Litestar, str],
) -> None:
    _, app, token = served
    paths = _plain_get_paths(app)
    assert "/healthz" in paths and "/" in paths and "/api/v1/node" in paths
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as http:
        for path in paths:
            get = http.get(path, headers=auth, follow_redirects=False)
            head = http.head(path, headers=auth, follow_redirects=False)
            assert head.status_code == get.status_code, (path, head.status_code, get.status_code)
            assert head.content == b"", path
            for name in ("content-type", "content-security-policy", "cache-control"):
                assert head.headers.get(name) == get.headers.get(name), (path, name)


def test_head_on_a_missing_path_is_404_and_on_a_post_only_route_405(
    served: tuple[Node, Litestar, str],
) -> None:
    _, app, _ = served
    with TestClient(app) as http:
        assert http.head("/no/such/path").status_code == 404
        assert http.head("/api/v1/redact/preview").status_code == 405


def test_answers_to_credentialed_requests_are_not_cached(served: tuple[Node, Litestar, str]) -> None:
    _, app, token = served
    with TestClient(app) as http:
        mine = http.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        public = http.get("/api/v1/node")
    assert mine.status_code == 200
    assert mine.headers["cache-control"] == "private, no-store"
    assert "no-store" not in public.headers.get("cache-control", "")


def test_a_body_cut_short_is_a_400_not_a_500(served: tuple[Node, Litestar, str]) -> None:
    _, app, token = served
    sent: list[dict[str, Any]] = []
    events = iter(
        [
            {"type": "http.request", "body": b'{"text": "hel', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )

    async def receive() -> dict[str, Any]:
        return next(events, {"type": "http.disconnect"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/redact/preview",
        "raw_path": b"/api/v1/redact/preview",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", b"100"),
            (b"authorization", f"Bearer {token}".encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }

    async def run() -> None:
        async with asyncio.timeout(30):
            await app(scope, receive, send)  # type: ignore[arg-type]

    asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 400


def test_a_strangers_refusals_reach_the_security_log_once_a_minute_escaped(
    served: tuple[Node, Litestar, str],
) -> None:
    node, _, _ = served
    at = node.now()

    def refuse(when: int, ip: str, agent: str) -> None:
        refusal = Refusal(at=when, step="summary", reason="unsigned", detail="not signed")
        node.store.write(lambda c: record_refusal(c, refusal, ip=ip, user_agent=agent))

    for n in range(50):
        refuse(at + n % 30, "203.0.113.9", "evil\x85NEL\x1b[31m")
    refuse(at + 61, "203.0.113.9", "evil")
    refuse(at, "198.51.100.1", "other")
    rows = node.store.read(
        lambda c: c.execute(
            "SELECT ip, user_agent FROM security_events WHERE action = 'peer.refused:unsigned' ORDER BY id"
        ).fetchall()
    )
    assert [r[0] for r in rows] == ["203.0.113.9", "203.0.113.9", "198.51.100.1"]
    assert "\x85" not in rows[0][1] and "\x1b" not in rows[0][1]


def test_a_static_name_too_long_for_the_file_system_is_a_404(served: tuple[Node, Litestar, str]) -> None:
    _, app, _ = served
    with TestClient(app) as http:
        for method in ("GET", "HEAD"):
            assert http.request(method, "/static/" + "a" * 300).status_code == 404


def test_an_integration_keys_answers_are_not_cached_either(served: tuple[Node, Litestar, str]) -> None:
    from coop.node.members.repository import add_integration

    node, app, _ = served
    _, key = node.store.write(lambda c: add_integration(c, name="owui-cache", now=node.now()))
    with TestClient(app) as http:
        answer = http.post("/api/v1/contributions/ingest", headers={"X-API-Key": key}, content=b"{}")
    assert answer.status_code >= 400
    assert answer.headers["cache-control"] == "private, no-store"


def test_a_key_twice_inside_chat_content_sent_as_text_is_refused(served: tuple[Node, Litestar, str]) -> None:
    import json

    _, app, token = served
    inner = (
        '{"messages": [{"role": "user", "content": "secret-A", "content": "shown-B"},'
        ' {"role": "assistant", "content": "ok"}]}'
    )
    body = {"label": "good", "consent": True, "format": "messages", "content": inner}
    with TestClient(app) as http:
        answer = http.post(
            "/api/v1/contributions",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            content=json.dumps(body),
        )
    assert answer.status_code in (400, 422), answer.text
    assert answer.json()["field"].startswith("content"), answer.json()


def test_a_signed_payload_with_a_key_twice_is_refused() -> None:
    from coop.governance.envelope import open_envelope, seal
    from coop.governance.errors import InvalidValueError
    from coop.governance.signing import Signer

    sealed = seal(b'{"version": 1, "version": 2}', "application/vnd.test+json", [Signer(bytes(32))])
    with pytest.raises(InvalidValueError, match="version"):
        open_envelope(sealed, payload_type="application/vnd.test+json", max_bytes=10_000)


def test_a_proposals_reason_cannot_forge_lines_in_the_cli(
    served: tuple[Node, Litestar, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from coop.node.cli import main

    node, app, token = served
    reason = "harmless\nproposal 99 [adopted] by ada: FAKE"
    with TestClient(app) as http:
        opened = http.post(
            "/api/v1/governance/proposals",
            headers={"Authorization": f"Bearer {token}"},
            json={"changes": {"quality_freeze": True}, "reason": reason},
        )
    assert opened.status_code == 201, opened.text
    capsys.readouterr()
    assert main(["proposals", str(node.data.root)]) == 0
    shown = capsys.readouterr().out
    assert "\nproposal 99" not in shown and "harmless\\x0aproposal 99" in shown


def test_an_ndjson_export_is_checked_line_by_line() -> None:
    from coop.node.errors import InputError
    from coop.node.intake.chat import IntakeFormat
    from coop.node.intake.formats import parse_content

    with pytest.raises(InputError) as caught:
        parse_content(b'{"id": "1"}\n{"id": "2", "id": "3"}\n', IntakeFormat.OPENWEBUI)
    assert caught.value.field == "content.[1].id"
