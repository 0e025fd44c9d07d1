"""Every byte string the node signs is canonical JSON (RFC 8785, coop.governance.canonical).

Found statically: each ``seal(...)`` call's payload is ``canonical_bytes(...)``, except inside
``seal_manifest``, whose payload only :func:`coop.federation.manifest.build_manifest` makes (and it
returns ``canonical_bytes``). A payload encoded any other way fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "coop"


def _calls(name: str) -> list[tuple[Path, ast.Call]]:
    found = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if called == name:
                    found.append((path, node))
    return found


def _is_canonical(arg: ast.expr) -> bool:
    return isinstance(arg, ast.Call) and getattr(arg.func, "id", None) == "canonical_bytes"


def test_every_sealed_payload_is_canonical_bytes() -> None:
    calls = _calls("seal")
    assert len(calls) >= 5  # release, revision, attestation, report, request (and the manifest's)
    wrong = [
        f"{path.relative_to(SRC)}:{call.lineno}"
        for path, call in calls
        if not _is_canonical(call.args[0]) and path.name != "manifest.py"
    ]
    assert not wrong, f"signed payloads not through canonical_bytes: {wrong}"


def test_manifests_are_built_canonically() -> None:
    manifest = ast.parse((SRC / "federation" / "manifest.py").read_text(encoding="utf-8"))
    build = next(n for n in manifest.body if isinstance(n, ast.FunctionDef) and n.name == "build_manifest")
    returns = [n for n in ast.walk(build) if isinstance(n, ast.Return)]
    assert returns and all(r.value is not None and _is_canonical(r.value) for r in returns)
