"""Issue 11 item 10: one server per address and one per data directory, with either server.

Real `coop serve` processes on 127.0.0.1: a second co-op on a taken port and a second server on
a data directory already served both exit at once with one line; the first keeps answering
alone; kill -9 frees the data directory; other commands still work beside a running server.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
import pytest

from harness import init_node
from nodeproc import NodeProcess, coop, free_port

pytestmark = pytest.mark.integration

SERVERS = ["granian", "uvicorn"]


def _serve(root: Path, port: int, server: str) -> tuple[int, str]:
    """`coop serve` expected to refuse: bounded by a timeout (a hang fails, it is not timed)."""
    result = coop("serve", str(root), "--port", str(port), "--server", server, check=False, timeout=60)
    return result.returncode, result.stderr


def _one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{stderr}"
    assert lines[0].startswith("coop: error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(("first", "second"), [(s, t) for s in SERVERS for t in SERVERS])
def test_serve_on_a_taken_port_refuses_with_one_line(tmp_path: Path, first: str, second: str) -> None:
    a = init_node(tmp_path / "a")
    b = init_node(tmp_path / "b")
    other_id = coop("identity", "show", str(b), "--json").stdout
    node = NodeProcess(a, server=first).start()
    try:
        own_id = httpx.get(f"{node.url}/api/v1/node", timeout=5).json()["node_id"]
        code, stderr = _serve(b, node.port, second)
        line = _one_line_error(stderr)
        assert code == 3, stderr
        assert f"127.0.0.1:{node.port}" in line and "already in use" in line
        # Only the first co-op answers there.
        for _ in range(20):
            assert httpx.get(f"{node.url}/api/v1/node", timeout=5).json()["node_id"] == own_id
        assert own_id not in other_id
    finally:
        node.stop()


@pytest.mark.parametrize("server", SERVERS)
def test_serve_on_a_served_data_dir_exits_at_once_and_commands_still_work(
    tmp_path: Path, server: str
) -> None:
    root = init_node(tmp_path / "a")
    node = NodeProcess(root, server=server).start()
    try:
        code, stderr = _serve(root, free_port(), server)
        line = _one_line_error(stderr)
        assert code == 3, stderr
        assert re.search(r"coop serve on .* is already running \(pid \d+\)", line), line
        # The CLI's other writers share the database (WAL) with the running server.
        token = coop("member", "add", str(root), "ada").stdout.strip()
        me = httpx.get(f"{node.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert me.status_code == 200, me.text
        coop("embargo", "on", str(root))
        coop("embargo", "off", str(root))
        coop("metrics", str(root))
        coop("identity", "show", str(root))
        # A key rotation while serving is refused (the server would go on signing with the old key).
        rotate = coop("identity", "rotate", str(root), check=False)
        assert rotate.returncode == 3, rotate.stderr
        assert re.search(
            r"^coop: error: coop serve is already running \(pid \d+\): stop it before rotating the key$",
            _one_line_error(rotate.stderr),
        ), rotate.stderr
        assert httpx.get(f"{node.url}/healthz", timeout=5).status_code == 200
    finally:
        node.stop()


@pytest.mark.parametrize("server", SERVERS)
def test_serve_lock_is_released_by_kill_9(tmp_path: Path, server: str) -> None:
    root = init_node(tmp_path / "a")
    node = NodeProcess(root, server=server).start()
    node.kill9()
    again = NodeProcess(root, server=server).start()  # not "already running"
    try:
        assert httpx.get(f"{again.url}/healthz", timeout=5).status_code == 200
    finally:
        again.stop()


def test_serve_refuses_a_port_a_foreign_reuseport_listener_holds(tmp_path: Path) -> None:
    """Not only another co-op: any listener, even one that allows port sharing."""
    import socket

    if not hasattr(socket, "SO_REUSEPORT"):  # pragma: no cover - Linux has it
        pytest.skip("no SO_REUSEPORT on " + sys.platform)
    root = init_node(tmp_path / "a")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code, stderr = _serve(root, port, "granian")
    assert code == 3, stderr
    assert "already in use" in _one_line_error(stderr)
