"""The package arrows point one way (ARCHITECTURE.md): a wrong import fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "coop"

# package -> the packages of ours it may import
ALLOWED = {
    "governance": set(),
    "federation": {"governance"},
    "eval": {"governance"},
    "node": {"governance", "federation", "eval", "node"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "coop" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_allowed_packages(package: str) -> None:
    folder = SRC / package
    if not folder.exists():
        pytest.skip(f"{package}/ not written yet")
    for path in folder.rglob("*.py"):
        wrong = _imports(path) - ALLOWED[package] - {package}
        assert not wrong, f"{path.relative_to(SRC)} imports {sorted(wrong)}"


def test_nothing_imports_node_outside_node() -> None:
    for path in SRC.rglob("*.py"):
        if path.is_relative_to(SRC / "node"):
            continue
        assert "node" not in _imports(path), f"{path.relative_to(SRC)} imports coop.node"


def test_governance_does_no_io() -> None:
    banned = {"sqlite3", "socket", "httpx", "os", "pathlib", "time", "random", "subprocess"}
    for path in (SRC / "governance").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & banned, f"{path.name} imports {sorted(roots & banned)}"
