"""Ingest stays responsive while the node evaluates: the local eval route decodes its 16 MB body off
the event loop and a slice of base64 at a time, and the child reads its input from a private file,
not a pipe the node's thread must feed 4 KiB at a time (each write a wake-up that takes the GIL)."""

from __future__ import annotations

import base64
import binascii
import os
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from coop.node.config import EvalConfig
from coop.node.evaluation import sandbox as sandbox_module
from coop.node.evaluation.sandbox import Sandbox
from coop.node.http import evaluation as route
from coop.node.http.app import create_app
from coop.node.runtime import Node

from factories import make_node

SLICE = route._B64_SLICE

# A worker stand-in that describes its stdin instead of evaluating.
_DESCRIBE = """
import os, stat, sys, msgspec
info = os.fstat(0)
data = sys.stdin.buffer.read()
task = msgspec.msgpack.decode(data)
sys.stdout.buffer.write(msgspec.msgpack.encode({"statistics": {
    "regular": int(stat.S_ISREG(info.st_mode)), "links": info.st_nlink,
    "mode": stat.S_IMODE(info.st_mode), "bytes": len(data), "records": len(task["records"]),
}}))
"""


def _describe_command(tmp_path: Path) -> list[str]:
    script = tmp_path / "describe.py"
    script.write_text(_DESCRIBE)
    return [sys.executable, str(script)]


@pytest.mark.parametrize(
    "size", [0, 1, 2, 3, SLICE * 3 // 4 - 1, SLICE * 3 // 4, SLICE * 3 // 4 + 1, SLICE * 3 + 2]
)
def test_sliced_base64_gives_what_the_whole_call_gives(size: int) -> None:
    data = os.urandom(size)
    assert route.b64decode_sliced(base64.b64encode(data).decode()) == data


@pytest.mark.parametrize(
    "text",
    [
        "QQ==" + "A" * (SLICE - 4) + "QUFB",  # padding inside the first slice
        "A" * (SLICE - 1) + "*" + "QUFB",  # a character outside the alphabet in a slice before the last
        "A" * (SLICE + 1),  # a length the whole text cannot have
        "A" * SLICE + "QQ=",  # bad padding in the last slice
        "A" * SLICE + "QUFé",  # not ASCII
    ],
)
def test_sliced_base64_refuses_what_the_whole_call_refuses(text: str) -> None:
    with pytest.raises((binascii.Error, ValueError)):
        base64.b64decode(text, validate=True)
    with pytest.raises((binascii.Error, ValueError)):
        route.b64decode_sliced(text)


def test_base64_is_decoded_a_slice_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """One C call holds the GIL; a 12 MB model in one call held it ~0.1 s against every request."""
    seen: list[int] = []
    whole = base64.b64decode

    def recording(text: Any, **kwargs: Any) -> bytes:
        seen.append(len(text))
        return whole(text, **kwargs)

    monkeypatch.setattr(base64, "b64decode", recording)
    data = os.urandom(3 * SLICE)
    assert route.b64decode_sliced(base64.b64encode(data).decode()) == data
    assert len(seen) == 4
    assert max(seen) <= SLICE


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = make_node(tmp_path_factory.mktemp("stall"))
    try:
        yield node
    finally:
        node.close()


def test_the_local_eval_body_is_decoded_off_the_event_loop(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: dict[str, int] = {}
    read, decode = route._capped_body, route.decode_body

    async def reading(*args: Any) -> bytes:
        threads["read"] = threading.get_ident()  # the route's own coroutine: the event loop
        return await read(*args)

    def decoding(*args: Any) -> Any:
        threads["decode"] = threading.get_ident()
        return decode(*args)

    monkeypatch.setattr(route, "_capped_body", reading)
    monkeypatch.setattr(route, "decode_body", decoding)
    # The test client does not connect from loopback; the token check is not what this is about.
    monkeypatch.setattr(route, "local_only", lambda *_: None)
    body = b'{"request": {"payload": "x"}, "artifact": "' + base64.b64encode(b"model") + b'"}'
    with TestClient(create_app(node, background=False)) as client:
        answer = client.post("/api/v1/eval/local", content=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["decline"] == "bad_request"
    assert threads["decode"] != threads["read"]


def test_the_child_reads_its_input_from_a_private_unlinked_file(tmp_path: Path) -> None:
    records = [b'{"n": %d}' % i for i in range(50)]
    sandbox = Sandbox(EvalConfig(timeout_s=60), command=_describe_command(tmp_path))
    outcome = sandbox.run("label-agreement", os.urandom(200_000), records)
    assert outcome.kind == "ok", outcome.message
    assert outcome.statistics is not None
    stats = outcome.statistics
    assert stats["regular"] == 1  # a file, not a pipe
    assert stats["links"] == 0  # unlinked once the child held it
    assert stats["mode"] == stat.S_IRUSR | stat.S_IWUSR
    assert stats["records"] == 50
    assert stats["bytes"] > 200_000


def test_a_full_tmpfs_falls_back_to_the_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = Sandbox(EvalConfig(timeout_s=60), command=_describe_command(tmp_path))
    tried: list[Path | None] = []
    start_in: Callable[..., Any] = Sandbox._start_in

    def full_tmpfs(self: Sandbox, scratch: Path | None, payload: bytes, tmp: str) -> Any:
        tried.append(scratch)
        if scratch is not None:
            raise OSError(28, "No space left on device")
        return start_in(self, scratch, payload, tmp)

    monkeypatch.setattr(sandbox_module, "_SCRATCH", tmp_path)
    monkeypatch.setattr(Sandbox, "_start_in", full_tmpfs)
    outcome = sandbox.run("label-agreement", b"model", [b"{}"])
    assert outcome.kind == "ok", outcome.message
    assert tried == [tmp_path, None]
