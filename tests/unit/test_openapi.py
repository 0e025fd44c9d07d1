"""The OpenAPI document at /schema describes the bodies the handlers decode themselves."""

from __future__ import annotations

from pathlib import Path

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
