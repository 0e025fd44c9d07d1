"""Run every ``bench/bench_*.py`` in turn, each with its defaults, and report how each went.

    .venv/bin/python bench/run_all.py [--only ingest,release] [--skip redaction] [--no-record]

Each benchmark runs as its own process with this interpreter from the
repository root, prints its figures and appends its section to
``bench/RESULTS.md``; one that fails (or outlives ``--timeout``) does not stop
the others.  Exit status 1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

BENCH: Final = Path(__file__).resolve().parent
ROOT: Final = BENCH.parent


def benchmarks() -> list[Path]:
    return sorted(BENCH.glob("bench_*.py"))


def _name(path: Path) -> str:
    return path.stem.removeprefix("bench_")


def run(path: Path, *, timeout: float, extra: list[str]) -> tuple[int, float]:
    """Run one benchmark in its own process group; returns (exit code, seconds)."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(path), *extra], cwd=ROOT, start_new_session=True)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        code = 124
    except BaseException:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        raise
    return code, time.monotonic() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated names to run (ingest, release, redaction, ...)")
    parser.add_argument("--skip", default="", help="comma-separated names to leave out")
    parser.add_argument("--no-record", action="store_true", help="pass --no-record to every benchmark")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per benchmark")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    found = benchmarks()
    if args.list:
        print("\n".join(_name(p) for p in found))
        return 0
    only = set(args.only.split(",")) if args.only else None
    skip = set(filter(None, args.skip.split(",")))
    chosen = [p for p in found if (only is None or _name(p) in only) and _name(p) not in skip]
    extra = ["--no-record"] if args.no_record else []
    outcomes: list[tuple[str, int, float]] = []
    for path in chosen:
        print(f"\n=== {path.relative_to(ROOT)} ===", flush=True)
        code, seconds = run(path, timeout=args.timeout, extra=extra)
        outcomes.append((_name(path), code, seconds))
    print("\n=== summary ===")
    for name, code, seconds in outcomes:
        status = "ok" if code == 0 else ("timed out" if code == 124 else f"FAILED (exit {code})")
        print(f"{name:12} {status:20} {seconds:7.0f} s")
    return 0 if all(code == 0 for _, code, _ in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
