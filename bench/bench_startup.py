"""Start-up time of the ``coop`` command line, as a ratio to a bare ``python -c pass``.

Issue 12 asks for ``coop --help`` within 10x of the bare interpreter in the same venv (it was
~35x when every command imported pyarrow, numpy and flwr).  Each command runs N times as a new
process, interleaved with the baseline so both see the same machine load; we report the median
wall time of each and the ratio of medians, print a table and append it to ``bench/RESULTS.md``.

    .venv/bin/python bench/bench_startup.py [--runs 21] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from results import append_section, code_version, command, machine, markdown_table  # bench/results.py

ROOT = Path(__file__).resolve().parent.parent
COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "coop --help": [sys.executable, "-m", "coop.node.cli", "--help"],
    "coop contribute --help": [sys.executable, "-m", "coop.node.cli", "contribute", "--help"],
    "coop member list --help": [sys.executable, "-m", "coop.node.cli", "member", "list", "--help"],
}
LIMIT = 10.0  # the ratio issue 12 asks for


def _once(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - start


def measure(runs: int) -> dict[str, list[float]]:
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for argv in COMMANDS.values():  # one warm-up each: the page cache, not the code, on the first run
        _once(argv, env)
    for _ in range(runs):
        for name, argv in COMMANDS.items():
            times[name].append(_once(argv, env))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="runs of each command (median taken)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    times = measure(args.runs)
    base = statistics.median(times["python -c pass"])
    rows = []
    worst = 0.0
    for name, values in times.items():
        median = statistics.median(values)
        ratio = median / base
        if name != "python -c pass":
            worst = max(worst, ratio)
        rows.append([f"`{name}`", f"{median * 1000:.0f} ms", f"{min(values) * 1000:.0f} ms", f"{ratio:.1f}x"])
    table = markdown_table(["command", "median", "best", "ratio to python -c pass"], rows)
    verdict = f"worst ratio **{worst:.1f}x** (limit {LIMIT:.0f}x): {'within' if worst <= LIMIT else 'OVER'}"
    print(table)
    print(verdict)
    if not args.no_write:
        path = append_section(
            "CLI start-up",
            [
                f"- command: `{command(__file__)}`",
                f"- machine: {machine()}",
                f"- code: {code_version()}",
                f"- {args.runs} runs of each, interleaved, medians; a new process each run;"
                f" load average at the end {os.getloadavg()[0]:.1f}",
                f"- {verdict}",
                "",
                table,
            ],
        )
        print(f"appended to {path}")
    return 0 if worst <= LIMIT else 1


if __name__ == "__main__":
    raise SystemExit(main())
