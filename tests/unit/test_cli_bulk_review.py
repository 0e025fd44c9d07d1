"""The new-user review of bulk contribute and the member client: the rerun key ignores how a
chat was picked, one bad chat of an export is refused alone, empty chats are counted, the node's
field reaches --json errors, the client's read timeout, a port out of range."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from coop.node import cli
from coop.node import client as node_client
from coop.node.cli.exports import split_export
from coop.node.client import CONNECT_TIMEOUT, READ_TIMEOUT, UPLOAD_READ_TIMEOUT, NodeClient, UnreachableError
from coop.node.errors import InputError
from coop.node.http.app import create_app
from coop.node.intake.chat import IntakeFormat
from coop.node.runtime import Node

from factories import make_member, make_node

URL = "http://testserver.local"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path)
    try:
        yield node
    finally:
        node.close()


@pytest.fixture
def token(node: Node, monkeypatch: pytest.MonkeyPatch) -> str:
    """A member's token, with the command line's HTTP client pointed at the node's app in-process."""
    real = node_client.NodeClient
    app = TestClient(create_app(node, background=False))

    class InProcess(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            return app._transport.handle_request(request)

    def client(base_url: str, token: str, **kwargs: Any) -> NodeClient:
        return real(base_url, token, transport=InProcess(), **kwargs)

    monkeypatch.setattr(node_client, "NodeClient", client)
    _, secret = make_member(node)
    return secret


def _row(chat_id: str, text: str, answer: str = "an answer") -> dict[str, Any]:
    messages = {
        "q": {"id": "q", "parentId": None, "childrenIds": ["a"], "role": "user", "content": text},
        "a": {"id": "a", "parentId": "q", "childrenIds": [], "role": "assistant", "content": answer},
    }
    history = {"currentId": "a", "messages": messages}
    return {"id": chat_id, "title": f"title {chat_id}", "chat": {"history": history}}


def _empty(chat_id: str) -> dict[str, Any]:
    return {"id": chat_id, "title": "nothing", "chat": {"history": {"currentId": None, "messages": {}}}}


def _export(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _contribute(file: str, token: str, *args: str) -> int:
    return cli.main(
        ["contribute", file, "--node", URL, "--token", token, "--label", "good", "--consent", *args]
    )


def test_contribute_rerun_without_chat_id_finds_the_chats_shared_by_id_as_duplicates(
    tmp_path: Path, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    export = _export(tmp_path, *(json.dumps(_row(f"c{n}", f"question number {n}")) for n in range(4)))
    assert _contribute(export, token, "--chat-id", "c1", "--chat-id", "c2") == 0
    assert capsys.readouterr().err.splitlines()[-1].endswith("2 new, 0 duplicate, 0 refused")

    assert _contribute(export, token) == 0
    # The same chats, however picked, get the same Idempotency-Key (was: 4 new).
    assert capsys.readouterr().err.splitlines()[-1].endswith("2 new, 2 duplicate, 0 refused")


def test_contribute_one_oversized_or_broken_chat_is_refused_alone_and_the_rest_shared(
    tmp_path: Path, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    export = _export(
        tmp_path,
        json.dumps(_row("small-1", "a small question")),
        json.dumps(_row("huge", "a big one", answer="x" * 100_001)),
        '{"id": "broken", "chat": ',
        json.dumps(_row("small-2", "another small question")),
    )

    assert _contribute(export, token) == 8  # some refused: the README's exit code
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "4 chats: 2 new, 0 duplicate, 2 refused"
    assert any(line.startswith("coop: refused huge: the node refused (413)") for line in err)
    assert any(line.startswith("coop: refused line 3: not valid JSON") for line in err)


def test_contribute_counts_chats_without_messages_as_skipped(
    tmp_path: Path, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    export = _export(
        tmp_path, json.dumps(_row("a", "first")), json.dumps(_empty("e")), json.dumps(_row("b", "second"))
    )
    assert _contribute(export, token) == 0
    assert (
        capsys.readouterr().err.splitlines()[-1]
        == "3 chats: 2 new, 0 duplicate, 0 refused, 1 skipped: no messages"
    )


def test_contribute_of_one_chat_over_the_default_limit_is_left_to_the_node(
    tmp_path: Path, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "one.json"
    path.write_text(json.dumps(_row("huge", "big", answer="x" * 100_001)), encoding="utf-8")
    assert _contribute(str(path), token, "--json") == 2
    error = json.loads(capsys.readouterr().err)
    assert error["error"].startswith("the node refused (413)")
    assert error["field"] is not None and error["field"].endswith(".content")


def test_split_export_keeps_a_broken_row_with_its_problem_and_marks_empty_rows() -> None:
    data = b"\n".join([json.dumps(_row("a", "hi")).encode(), b"[1, 2", json.dumps(_empty("e")).encode()])
    chats = split_export(data, IntakeFormat.OPENWEBUI)
    assert [(c.chat_id, c.empty, c.problem is not None) for c in chats] == [
        ("a", False, False),
        (None, False, True),
        ("e", True, False),
    ]
    assert chats[1].shown == "line 2"


def test_json_error_of_a_refusal_by_the_node_names_its_field(
    token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["correct", "nonexist", "--node", URL, "--token", token, "--text", "x", "--json"]) == 4
    error = json.loads(capsys.readouterr().err)
    assert error["field"] == "uid"
    assert error["kind"] == "not-found"

    assert cli.main(["correct", "nonexist", "--node", URL, "--token", token, "--text", "x"]) == 4
    line = capsys.readouterr().err
    assert line.count("\n") == 1 and line.count("[uid]") == 1  # one line, the field said once


def test_client_refusal_carries_the_nodes_field() -> None:
    problem = {"title": "Invalid request", "detail": "not one of good, fail", "field": "label"}
    transport = httpx.MockTransport(lambda request: httpx.Response(422, json=problem))
    with (
        NodeClient("http://node.test", "coop_t", transport=transport) as client,
        pytest.raises(InputError) as refused,
    ):
        client.request("POST", "/api/v1/contributions")
    assert refused.value.field == "label"
    assert refused.value.message == "the node refused (422): not one of good, fail [label]"


def test_client_small_calls_wait_less_for_an_answer_than_uploads() -> None:
    timeouts: list[dict[str, float]] = []

    def record(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        return httpx.Response(200, json={})

    with NodeClient("http://node.test", "coop_t", transport=httpx.MockTransport(record)) as client:
        client.request("GET", "/api/v1/me")
        client.request("POST", "/api/v1/contributions", upload=True)
    assert [(t["connect"], t["read"]) for t in timeouts] == [
        (CONNECT_TIMEOUT, READ_TIMEOUT),
        (CONNECT_TIMEOUT, UPLOAD_READ_TIMEOUT),
    ]
    assert CONNECT_TIMEOUT == 3.0 and READ_TIMEOUT < UPLOAD_READ_TIMEOUT


def test_client_node_that_accepts_but_never_answers_is_unreachable_with_its_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(node_client, "READ_TIMEOUT", 0.2)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts; nobody answers
        port = silent.getsockname()[1]
        silent_node = NodeClient(f"http://127.0.0.1:{port}", "coop_t")
        waited = r"accepted the connection but did not answer within 0\.2 s"
        with silent_node as client, pytest.raises(UnreachableError, match=waited):
            client.request("GET", "/api/v1/me")


@pytest.mark.parametrize("port", ["80000", "0", "-1"])
def test_serve_port_out_of_range_is_a_usage_error_not_a_traceback(
    tmp_path: Path, port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["serve", str(tmp_path), "--port", port]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--port" in err and "Traceback" not in err


def test_split_export_of_a_json_array_gives_each_chat_as_bytes() -> None:
    # Open WebUI's "export all" as one JSON array (not NDJSON): the demo's export, split per chat.
    data = json.dumps([_row("a", "first"), _row("b", "second"), _row("c", "third")]).encode()
    chats = split_export(data, IntakeFormat.OPENWEBUI)
    assert [chat.chat_id for chat in chats] == ["a", "b", "c"]
    assert all(isinstance(chat.document, bytes) and json.loads(chat.document)["id"] for chat in chats)
