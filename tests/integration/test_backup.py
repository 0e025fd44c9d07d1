"""coop backup: a live node copied with SQLite's online backup; the copy is a working data directory."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process
from nodeproc import coop

pytestmark = pytest.mark.integration


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_backup_of_a_live_node_restores_as_a_data_directory(tmp_path: Path) -> None:
    node = make_node(tmp_path, name="Backed Up")
    out = tmp_path / "backups" / "2026-11-22"
    try:
        member, _ = make_member(node)
        uids = [contribute(node, member) for _ in range(5)]
        process(node)
        node.cut_release()
        late = contribute(node, member)  # still only in the write-ahead log of the open node
        root = node.data.root
        node_id = node.identity.node_id
        # The node is open (and could be serving) while the backup runs.
        report = json.loads(coop("backup", str(root), str(out), "--json").stdout)
    finally:
        node.close()
    assert report["integrity"] == "ok" and report["releases"] == 1
    assert Path(report["out"]) == out
    for secret in ("coop.sqlite3", "node.toml", "keys/node.key", "keys/salt"):
        assert _mode(out / secret) == 0o600, secret
    assert not (out / "coop.sqlite3-wal").exists()  # one self-contained file
    assert (out / "keys" / "salt").read_bytes() == (root / "keys" / "salt").read_bytes()
    assert (out / "releases" / "v1" / "SHA256SUMS").read_bytes() == (
        root / "releases/v1/SHA256SUMS"
    ).read_bytes()
    # Restored: the same co-op, every record (the late one too), an intact audit chain.
    assert json.loads(coop("identity", "show", str(out), "--json").stdout)["node_id"] == node_id
    verified = coop("audit", "verify", str(out))
    assert "audit chain intact" in verified.stdout
    # The signed head came along: a restored node is checked against it, not "no signed head yet".
    assert _mode(out / "audit-head.json") == 0o600
    assert "no signed head" not in verified.stdout + verified.stderr
    restored = Node(out)
    try:
        held = restored.store.read(lambda c: {r[0] for r in c.execute("SELECT uid FROM contributions")})
        assert held == {*uids, late}
    finally:
        restored.close()


def test_backup_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    root = node.data.root
    node.close()
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    done = coop("backup", str(root), str(used), check=False)
    assert done.returncode != 0
    assert done.stderr.startswith("coop: error:") and len(done.stderr.strip().splitlines()) == 1
    assert (used / "keep.txt").read_text() == "mine" and sorted(p.name for p in used.iterdir()) == [
        "keep.txt"
    ]
    inside = coop("backup", str(root), str(root / "copy"), check=False)
    assert inside.returncode != 0 and "outside" in inside.stderr
