"""The command line as a pipeline stage: a reader that leaves early (`coop ... | head`) ends it quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from harness import init_node
from nodeproc import ENV, coop

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_node(tmp_path_factory.mktemp("pipes") / "node")


@pytest.mark.parametrize(
    "command", [["settings", "show"], ["audit", "show"], ["peers", "list"], ["retention"]]
)
def test_a_closed_pipe_ends_the_command_without_a_traceback(root: Path, command: list[str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has left before the command writes anything
    try:
        done = subprocess.run(
            [sys.executable, "-m", "coop.node.cli", *command, str(root)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=ENV,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    stderr = done.stderr.decode()
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert done.returncode == 141, (done.returncode, stderr)  # the README's table: the reader left


def test_a_peers_words_are_shown_not_obeyed_by_the_terminal(tmp_path: Path) -> None:
    import json
    import sqlite3

    root = init_node(tmp_path / "node")
    words = "refused\x1b[2J\x1b]0;owned\x07\r\x9b31m\u202eevil"
    db = next(root.glob("*.sqlite3"))
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "INSERT INTO peers (url, node_id, name, added_at, last_error) VALUES (?, ?, ?, 1, ?)",
            ("http://127.0.0.1:9/", "ab" * 32, "peer", words),
        )
    conn.close()
    shown = coop("peers", "list", str(root)).stdout
    assert not any(ch in shown for ch in "\x1b\x07\r\x9b\u202e"), repr(shown)
    assert "\\u001b[2J" in shown
    listed = json.loads(coop("peers", "list", "--json", str(root)).stdout)
    assert listed[0]["last_error"] == words  # the JSON still says exactly what the peer said
