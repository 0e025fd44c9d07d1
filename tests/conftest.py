"""Shared fixtures: data directories made by the real `coop init`, and running nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeproc import NodeProcess, coop


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    root = tmp_path / "node"
    coop("init", str(root), "--name", "Test Co-op")
    return root


@pytest.fixture
def running_node(node_dir: Path) -> Iterator[NodeProcess]:
    node = NodeProcess(node_dir).start()
    try:
        yield node
    finally:
        node.stop()
