"""The local eval route caps its body at ``eval.max_model_mb`` in base64 (plus the request): a body
announced over it is refused with a 413 problem before any of it is read; one within it is answered."""

from __future__ import annotations

import base64
import json
import secrets
import socket
import time
from pathlib import Path

import httpx
import pytest

from coop.eval import Filters, build_label_agreement_model, build_request
from coop.governance.signing import Signer
from coop.node.config import EvalConfig
from coop.node.http.evaluation import local_body_cap

from harness import PROBLEM_JSON, init_node, running

pytestmark = pytest.mark.integration


def _raw_post(url: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """Send only the request line and headers (no body at all) and read the answer."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    answer = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), answer, body


def _length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    for line in head.split("\r\n"):
        if line.startswith("content-length:"):
            return int(line.split(":", 1)[1])
    return 0


def test_a_body_announced_over_the_cap_is_refused_unread_and_one_within_is_answered(tmp_path: Path) -> None:
    root = init_node(tmp_path / "node", eval={"max_model_mb": 1})
    cap = local_body_cap(EvalConfig(max_model_mb=1))
    with running(root) as process:
        token = (root / "keys" / "eval.token").read_text(encoding="ascii").strip()
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        status, headers, body = _raw_post(
            process.url, "/api/v1/eval/local", {**auth, "Content-Length": str(cap + 1)}
        )
        assert status == 413
        assert headers["content-type"].startswith(PROBLEM_JSON)
        problem = json.loads(body)
        assert problem["field"] == "body" and "eval.max_model_mb = 1" in problem["detail"]
        # A request with a model within the cap reaches the evaluation (declined here: no records).
        model = build_label_agreement_model([("good words", True), ("bad words", False)], dim=256)
        node_id = httpx.get(f"{process.url}/api/v1/eval/local/identity", headers=auth, timeout=20).json()
        request = build_request(
            signer=Signer(bytes(range(32))),
            task="label-agreement",
            model_name="m.npz",
            artifact=model,
            targets=[node_id["node_id"]],
            purpose="test",
            filters=Filters(),
            now=int(time.time()),
            lifetime=3600,
            nonce=secrets.token_hex(8),
        )
        payload = b'{"request":' + request + b',"artifact":"' + base64.b64encode(model) + b'"}'
        answered = httpx.post(f"{process.url}/api/v1/eval/local", content=payload, headers=auth, timeout=60)
    assert answered.status_code == 200, answered.text
    assert answered.json()["decline"] == "too_few_records"
