"""Security headers (issue 11, item 5): every response, of every kind, says 'self' only and no framing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from coop.node.http.app import create_app
from coop.node.http.headers import CONTENT_SECURITY_POLICY

from factories import make_member, make_node

HTML = {"Accept": "text/html"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient[Any]]:
    node = make_node(tmp_path_factory.mktemp("headers"))
    make_member(node, "robin")
    with TestClient(create_app(node, background=False)) as http:
        yield http
    node.close()


ROUTES = [
    ("page", "GET", "/", HTML, 200),
    ("page for members (a redirect)", "GET", "/me", HTML, 303),
    ("API JSON", "GET", "/api/v1/node", {}, 200),
    ("plain text", "GET", "/robots.txt", {}, 200),
    ("static file", "GET", "/static/app.css", {}, 200),
    ("404 (no route)", "GET", "/no/such/path", {}, 404),
    ("404 page (no route)", "GET", "/no/such/path", HTML, 404),
    ("405", "DELETE", "/healthz", {}, 405),
    ("problem (401)", "GET", "/api/v1/me", {}, 401),
    ("problem (404 from a handler)", "GET", "/releases/v7", {}, 404),
    ("static 404", "GET", "/static/missing.css", {}, 404),
    ("error page (403)", "POST", "/login", HTML, 403),
]


@pytest.mark.parametrize(("kind", "method", "path", "headers", "status"), ROUTES, ids=[r[0] for r in ROUTES])
def test_every_response_carries_the_security_headers(
    client: TestClient[Any], kind: str, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    response = client.request(method, path, headers=headers, follow_redirects=False)
    assert response.status_code == status, f"{kind}: {response.status_code} {response.text[:200]}"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, kind
    assert response.headers["x-frame-options"] == "DENY", kind
    assert response.headers["x-content-type-options"] == "nosniff", kind
    assert response.headers["referrer-policy"] == "same-origin", kind
    assert len(response.headers.get_list("content-security-policy")) == 1, kind


def test_the_policy_allows_only_this_node_and_no_framing() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["frame-ancestors"] == "'none'"
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'", "no inline script, no eval, no other origin"
    for name, value in directives.items():
        for source in value.split():
            assert source in ("'self'", "'none'", "'unsafe-inline'", "data:"), (name, source)
        if "'unsafe-inline'" in value:
            assert name == "style-src-attr", "inline only for style attributes"
