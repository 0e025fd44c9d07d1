"""The OpenAPI document at /schema describes the bodies the handlers decode themselves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from coop.node.http.app import create_app

from factories import make_node


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("post", "/api/v1/contributions", "consent"),
        ("post", "/api/v1/contributions/ingest", "user"),
        ("patch", "/api/v1/contributions/{uid}", "correction"),
        ("post", "/api/v1/metrics/events", "stage"),
        ("patch", "/api/v1/me", "announce"),
    ],
)
def test_openapi_documents_request_body(tmp_path: Path, method: str, path: str, field: str) -> None:
    node = make_node(tmp_path)
    try:
        with TestClient(create_app(node, background=False)) as client:
            document = client.get("/schema/openapi.json").json()
    finally:
        node.close()
    body = document["paths"][path][method]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert field in schema["properties"]
    assert "$ref" not in str(schema)


_TEXT_ANSWERS = {"/metrics", "/robots.txt", "/api/v1/governance/payouts/{payout_id}/csv"}


def _document(tmp_path: Path) -> dict[str, Any]:
    node = make_node(tmp_path)
    try:
        with TestClient(create_app(node, background=False)) as client:
            document: dict[str, Any] = client.get("/schema/openapi.json").json()
            return document
    finally:
        node.close()


def test_every_operation_declares_its_answer_and_its_problems(tmp_path: Path) -> None:
    """Not "every response is a string": the JSON answers' shapes, and the problems, as problem+json."""
    document = _document(tmp_path)
    operations = [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete", "head")
    ]
    assert len(operations) > 40
    for method, path, operation in operations:
        responses = operation["responses"]
        where = f"{method.upper()} {path}"
        success = [code for code in responses if code.startswith("2")]
        assert success, where
        problems = [code for code in responses if code[0] in "45"]
        assert "429" in problems, where
        for code in problems:
            if (path, code) == ("/healthz", "503"):
                continue  # a stale job: the health report itself, as JSON
            content = responses[code]["content"]
            assert list(content) == ["application/problem+json"], (where, code)
            schema = content["application/problem+json"]["schema"]
            assert {"type", "title", "status", "detail"} <= set(schema["required"]), (where, code)
            assert "field" in schema["properties"], (where, code)
        if "requestBody" in operation:
            assert {"400", "413", "415", "422"} <= set(problems), where
        for code in success:
            for media, body in responses[code].get("content", {}).items():
                if media == "application/json" and path not in _TEXT_ANSWERS:
                    assert body["schema"].get("type") != "string", (where, code, body["schema"])


@pytest.mark.parametrize(
    "path", ["/api/v1/node", "/api/v1/governance/proposals", "/api/v1/contributions/{uid}"]
)
def test_json_answers_are_described_by_their_fields(tmp_path: Path, path: str) -> None:
    document = _document(tmp_path)
    item = document["paths"][path]
    operation = item.get("get")
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["type"] in ("object", "array"), schema
    assert "$ref" not in str(schema)


_PAGES = ["/", "/terms", "/faq", "/datasets", "/browse", "/leaderboards", "/bounties", "/federation",
          "/governance", "/login", "/schema"]  # fmt: skip
_EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)
_CSS_URL = re.compile(r"""url\(\s*["']?\s*(?:https?:)?//|@import\s+["']?(?:https?:)?//""", re.IGNORECASE)


def test_no_page_loads_anything_from_another_host(tmp_path: Path) -> None:
    """The API docs and every page: scripts, styles, fonts and icons come from the node itself."""
    node = make_node(tmp_path)
    try:
        with TestClient(create_app(node, background=False)) as client:
            for path in _PAGES:
                response = client.get(path, headers={"Accept": "text/html"})
                assert response.status_code == 200, (path, response.status_code)
                assert response.headers["content-type"].startswith("text/html"), path
                tags = re.findall(r"<(?:script|link|img|iframe|source|style)\b[^>]*>", response.text, re.I)
                external = [tag for tag in tags if _EXTERNAL.search(tag)]
                assert not external, (path, external)
                assert not _CSS_URL.search(response.text), path
                assert "<script>" not in response.text.replace(" ", "").lower(), f"{path}: an inline script"
            css = client.get("/static/app.css").text
            assert not _CSS_URL.search(css)
            for gone in ("/schema/redoc", "/schema/swagger", "/schema/elements", "/schema/rapidoc"):
                assert client.get(gone).status_code == 404, gone
            page = client.get("/schema").text
            assert "/api/v1/contributions" in page and "/schema/openapi.json" in page
    finally:
        node.close()


@pytest.mark.parametrize("path", ["/api/v1/contributions", "/api/v1/contributions/ingest"])
def test_the_retry_key_is_declared_where_it_is_honoured(tmp_path: Path, path: str) -> None:
    parameters = _document(tmp_path)["paths"][path]["post"].get("parameters", [])
    (retry,) = [p for p in parameters if p["name"] == "Idempotency-Key"]
    assert retry["in"] == "header" and retry["required"] is False
    assert retry["schema"]["maxLength"] == 200
