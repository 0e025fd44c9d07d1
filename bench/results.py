"""``bench/RESULTS.md``: the machine a benchmark ran on, its command, and appending a section.

Sections are only ever appended: other benchmarks write to the same file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Final

__all__ = [
    "RESULTS",
    "append_section",
    "code_version",
    "command",
    "machine",
    "markdown_table",
    "package_versions",
]

RESULTS: Final = Path(__file__).resolve().parent / "RESULTS.md"
_HEADER: Final = (
    "# Benchmark results\n\n"
    "Each benchmark in `bench/` appends a dated section here: the exact command,\n"
    "the machine, and the figures.  Sections are only ever appended.\n"
)
_PACKAGES: Final = ("litestar", "granian", "uvicorn", "msgspec", "pyarrow")


def package_versions(names: tuple[str, ...] = _PACKAGES) -> str:
    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def machine() -> str:
    """nproc, CPU model, RAM, Python and the versions of the packages on the hot paths."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown RAM"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024**2:.1f} GiB RAM"
                break
    except OSError:
        pass
    return (
        f"nproc {len(os.sched_getaffinity(0))}, {cpu}, {ram}, "
        f"Python {platform.python_version()} ({platform.system()} {platform.release()}); "
        f"{package_versions()}"
    )


def code_version() -> str:
    """The git commit, and a digest of src/ as it was on disk (others edit it while we run)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head, dirty = "unknown", ""
    digest = hashlib.sha256()
    for path in sorted((root / "src").rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    state = f"{len(dirty.splitlines())} uncommitted changes in src/" if dirty else "clean src/"
    return f"git {head} ({state}; src/*.py sha256 {digest.hexdigest()[:12]})"


def command(script: str) -> str:
    """The command line that ran ``script``, with paths relative to the working directory."""
    python = sys.executable
    relative = os.path.relpath(python)
    if not relative.startswith(".."):
        python = relative
    shown = os.path.relpath(script)
    if shown.startswith(".."):
        shown = script
    return " ".join([python, shown, *sys.argv[1:]])


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def append_section(title: str, lines: list[str]) -> Path:
    """Append ``## title — date`` and ``lines`` to RESULTS.md (made with a header if missing)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
    text = "\n".join([f"\n## {title} — {stamp} UTC\n", *lines, ""])
    if not RESULTS.exists():
        RESULTS.write_text(_HEADER, encoding="utf-8")
    with RESULTS.open("a", encoding="utf-8") as out:
        out.write(text)
    return RESULTS
