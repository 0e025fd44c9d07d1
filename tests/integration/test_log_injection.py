"""Log injection (issue 11, item 9): what a client sends never forges a line of the node's log.

A path with ``%0a`` (or a carriage return, an ANSI escape, a C1 control) is
logged escaped, with either server, and a traceback's lines are indented: a
line at the margin is one the node wrote.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import httpx
import pytest

from coop.node.logs import EscapingFormatter, escape_controls

from harness import init_node
from nodeproc import NodeProcess

pytestmark = pytest.mark.integration


def _margin_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line[0].isspace()]


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_a_path_with_a_newline_is_logged_on_one_line(tmp_path: Path, server: str) -> None:
    root = init_node(tmp_path / "node")
    node = NodeProcess(root, server=server, args=("--access-log",)).start()
    try:
        with httpx.Client(base_url=node.url, timeout=10) as http:
            assert http.get("/x%0aFORGED%20INFO%20coop.server:%20fake").status_code == 404
            assert http.get("/y%0d%0aFORGED2%1b%5b2J%C2%9b").status_code == 404
            assert http.get("/healthz").status_code == 200
    finally:
        node.stop()
    log = node.log()
    assert '"GET /healthz" 200' in log, "the access log is on"
    assert not [line for line in log.splitlines() if line.startswith("FORGED")], log
    assert "\x1b" not in log and "\x9b" not in log and "\r" not in log
    assert '"GET /x\\x0aFORGED INFO coop.server: fake" 404' in log
    assert '"GET /y\\x0d\\x0aFORGED2\\x1b[2J\\x9b" 404' in log


def test_the_formatter_escapes_messages_and_indents_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter("%(levelname)s %(message)s"))
    log = logging.getLogger("coop.test.escaping")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("peer said %s", "no\nFORGED line\u2028and\x00more")
        try:
            raise ValueError("bad\nFORGED in a traceback")
        except ValueError:
            log.exception("failed on %s", "/p\r\nFORGED")
    finally:
        log.removeHandler(handler)
    lines = _margin_lines(stream.getvalue())
    assert lines == [
        "WARNING peer said no\\x0aFORGED line\\u2028and\\x00more",
        "ERROR failed on /p\\x0d\\x0aFORGED",
    ], stream.getvalue()
    assert "FORGED in a traceback" in stream.getvalue(), "the traceback is kept, indented"
    assert escape_controls("tab\there") == "tab\\x09here"
