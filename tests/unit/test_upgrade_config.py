"""Config keys that moved out of node.toml (``[defaults]``) are read once when the node opens."""

from __future__ import annotations

import sqlite3
import tomllib
from pathlib import Path

import pytest

from coop.node.config import load_config
from coop.node.errors import StorageError
from coop.node.runtime import Node
from coop.node.storage.datadir import DataDir
from coop.node.storage.upgrade import plan_upgrade, read_moved_config, remove_moved_config

DEFAULTS = '\n[defaults]\nlicense = "CC0-1.0"  # the old way\nscope = "node"\n'


def make_node(root: Path) -> DataDir:
    data = DataDir.create(root, name="Upgrade Co-op")
    Node(root).close()
    return data


def add_defaults(data: DataDir, text: str = DEFAULTS) -> str:
    original = data.config_path.read_text(encoding="utf-8")
    data.config_path.write_text("# operator's note\n" + original + text, encoding="utf-8")
    return data.config_path.read_text(encoding="utf-8")


def audit_actions(root: Path) -> list[str]:
    """The audit log's actions after the node opened (and closed) once more."""
    Node(root).close()
    conn = sqlite3.connect(root / "coop.sqlite3")
    try:
        return [row[0] for row in conn.execute("SELECT action FROM audit_log ORDER BY seq")]
    finally:
        conn.close()


def test_load_config_passes_over_a_moved_section(tmp_path: Path) -> None:
    data = make_node(tmp_path / "node")
    add_defaults(data)
    assert load_config(data.config_path).node.name == "Upgrade Co-op"


def test_remove_moved_config_keeps_comments_and_a_backup(tmp_path: Path) -> None:
    data = make_node(tmp_path / "node")
    original = add_defaults(data)
    remove_moved_config(data.config_path)
    text = data.config_path.read_text(encoding="utf-8")
    assert text.startswith("# operator's note\n")
    assert "defaults" not in tomllib.loads(text)
    assert (tmp_path / "node" / "node.toml.bak").read_text(encoding="utf-8") == original
    assert not read_moved_config(data.config_path)


def test_moved_defaults_with_a_typo_refuse_to_open_naming_the_section(tmp_path: Path) -> None:
    data = make_node(tmp_path / "node")
    original = add_defaults(data, '\n[defaults]\nlicence = "CC0-1.0"\n')
    with pytest.raises(StorageError, match=r"\[defaults\]"):
        plan_upgrade(tmp_path / "node")
    with pytest.raises(StorageError, match=r"\[defaults\]"):
        Node(tmp_path / "node")
    assert data.config_path.read_text(encoding="utf-8") == original  # nothing lost on a refusal


def test_moved_defaults_do_not_override_settings_that_exist_and_are_recorded_once(tmp_path: Path) -> None:
    data = make_node(tmp_path / "node")
    original = add_defaults(data)
    assert "the co-op already has settings" in "\n".join(plan_upgrade(tmp_path / "node"))
    node = Node(tmp_path / "node")
    try:
        defaults = node.settings().settings.defaults
    finally:
        node.close()
    assert defaults.license == "CC-BY-SA-4.0" and defaults.scope == "public"  # unchanged
    assert "defaults" not in tomllib.loads(data.config_path.read_text(encoding="utf-8"))
    # A crash between the commit and the file's rewrite: the next opening records nothing new.
    data.config_path.write_text(original, encoding="utf-8")
    assert audit_actions(tmp_path / "node").count("config.moved") == 1


def test_plan_upgrade_of_a_current_node_is_empty_and_writes_nothing(tmp_path: Path) -> None:
    make_node(tmp_path / "node")
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "node").rglob("*")}
    assert plan_upgrade(tmp_path / "node") == []
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "node").rglob("*")} == before


def test_plan_upgrade_names_releases_that_will_get_their_signed_statement(tmp_path: Path) -> None:
    from factories import contribute, make_member, process

    root = tmp_path / "node"
    make_node(root)
    node = Node(root)
    try:
        member, _ = make_member(node)
        contribute(node, member, scope="public")
        process(node)
        node.cut_release()
    finally:
        node.close()
    assert plan_upgrade(root) == []
    (root / "releases" / "v1" / "release.dsse.json").unlink()  # as a node from before stored statements
    (line,) = plan_upgrade(root)
    assert "release.dsse.json" in line and line.endswith(": v1")
    Node(root).close()  # opening signs it
    assert (root / "releases" / "v1" / "release.dsse.json").exists()
    assert plan_upgrade(root) == []
