"""The package arrows point one way (ARCHITECTURE.md): a wrong import fails here."""

from __future__ import annotations

import ast
import re
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


# Inside node/: each area and the areas of node/ it may import (besides itself). Lower layers never
# import higher ones, so each concept has one home and no cycle can form. TYPE_CHECKING-only imports
# count too: a type is a dependency.
_LEAVES = {"errors", "ids", "logs", "files", "config"}
NODE_AREAS: dict[str, set[str]] = {
    "errors": set(),
    "ids": set(),
    "logs": set(),
    "files": {"errors"},
    "config": {"errors"},
    "storage": _LEAVES,
    "intake": _LEAVES,
    "members": _LEAVES | {"storage"},
    "collective": _LEAVES | {"storage", "members"},
    "policy": _LEAVES | {"storage", "members", "collective"},
    "contributions": _LEAVES | {"storage", "members", "intake", "collective", "policy"},
    "releases": _LEAVES | {"storage", "members", "intake", "collective", "policy", "contributions"},
    "peering": _LEAVES | {"storage", "members", "collective", "policy", "contributions", "releases"},
    "evaluation": _LEAVES | {"storage", "members", "collective", "policy", "contributions", "releases"},
    "channels": _LEAVES | {"storage", "members", "collective", "policy", "releases"},
    "metrics": _LEAVES | {"storage", "contributions", "releases", "channels", "peering"},
    "access": _LEAVES | {"storage", "members", "collective", "policy", "releases"},
    "runtime": _LEAVES
    | {"storage", "members", "intake", "collective", "policy", "contributions", "releases", "peering"}
    | {"evaluation", "channels", "metrics", "access"},
    "scheduler": _LEAVES | {"storage", "contributions", "releases", "peering", "metrics", "runtime"},
    # http/ assembles the API and mounts web/'s pages; web/ uses http/'s problem details and params.
    "http": set(),  # filled in below
    "web": set(),
    "server": set(),
    "client": {"errors"},
    "cli": set(),
}
# funnel.py reads rows (ledger, audit log, contributions) into chart series, as policy.py does for policy.
NODE_AREAS["funnel"] = _LEAVES | {"storage", "collective", "contributions", "releases"}
_BELOW_HTTP = set(NODE_AREAS) - {"http", "web", "server", "client", "cli"}
NODE_AREAS["http"] = _BELOW_HTTP | {"web"}
NODE_AREAS["web"] = _BELOW_HTTP | {"http"}
NODE_AREAS["server"] = _BELOW_HTTP | {"http"}
NODE_AREAS["cli"] = set(NODE_AREAS) - {"cli"}


def _node_area(path: Path) -> str:
    parts = path.relative_to(SRC / "node").parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def _node_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "coop.node":
                names = [f"coop.node.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["coop", "node"] and len(parts) > 2:
                found.add(parts[2])
    return found


def test_every_node_area_has_a_rule() -> None:
    areas = {_node_area(path) for path in (SRC / "node").rglob("*.py")} - {"__init__"}
    assert areas <= set(NODE_AREAS), f"areas without an import rule: {sorted(areas - set(NODE_AREAS))}"


@pytest.mark.parametrize("area", sorted(NODE_AREAS))
def test_node_areas_import_only_what_their_layer_allows(area: str) -> None:
    wrong: list[str] = []
    for path in sorted((SRC / "node").rglob("*.py")):
        if path.name == "__init__.py" and path.parent == SRC / "node":
            continue  # the package's lazy door to Node
        if _node_area(path) != area:
            continue
        bad = _node_imports(path) - NODE_AREAS[area] - {area}
        if bad:
            wrong.append(f"{path.relative_to(SRC)} imports {sorted(bad)}")
    assert not wrong, "\n".join(wrong)


def test_the_node_package_and_its_errors_load_nothing_heavy() -> None:
    import subprocess
    import sys

    code = (
        "import sys, coop.node, coop.node.errors\n"
        "heavy = [m for m in ('pyarrow', 'numpy', 'httpx', 'flwr', 'litestar') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "", f"importing coop.node.errors loaded {done.stdout.strip()}"


# SQL lives in storage/ and in the store-facing modules of the domain packages (members/, collective/,
# contributions/, releases/, peering/, evaluation/; policy.py, which turns rows into the disclosure
# policy's inputs; and funnel.py, which turns ledger and audit rows into chart series). The areas that
# serve, schedule or present hold none.
NO_SQL_AREAS = ("http", "web", "cli", "channels", "runtime", "scheduler", "server", "client", "metrics")
_SQL = re.compile(r"\.execute(many|script)?\(|\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b")


@pytest.mark.parametrize("area", NO_SQL_AREAS)
def test_no_sql_outside_the_store_facing_modules(area: str) -> None:
    found = [
        f"{path.relative_to(SRC)}:{number}"
        for path in sorted((SRC / "node").rglob("*.py"))
        if _node_area(path) == area
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _SQL.search(line)
    ]
    assert not found, f"SQL in {area}: {found}"
