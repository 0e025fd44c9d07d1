"""py-spy samples of a benchmarked process, summed up as shares by line and by function.

py-spy (``pip install py-spy``) needs root to read another process's memory.
Sampling is blocking (the process is paused for each sample): ``--nonblocking``
reads stacks while they change and gives torn ones; at 100 Hz the pauses cost little.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["profile_server", "pyspy_available", "record", "summarise", "thread_cpu"]


def _pyspy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else None


def pyspy_available() -> str | None:
    """None when py-spy can run here, else why not."""
    if _pyspy() is None:
        return "py-spy is not installed (.venv/bin/pip install py-spy)"
    if os.geteuid() != 0:
        return "py-spy needs root"
    return None


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each thread of a process."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            fields = (task / "stat").read_text().rpartition(")")[2].split()
            used[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return used


def _command(out: Path, rate: int, *, gil: bool = False, idle: bool = False) -> list[str]:
    pyspy = _pyspy()
    if pyspy is None:
        raise RuntimeError("py-spy is not installed")
    cmd = [pyspy, "record", "--rate", str(rate), "--threads", "--format", "raw", "--output", str(out)]
    return cmd + (["--gil"] if gil else []) + (["--idle"] if idle else [])


def record(pid: int, out: Path, *, seconds: int, rate: int = 100, gil: bool = False) -> str:
    """Sample a running process for ``seconds``; returns the folded stacks."""
    cmd = [*_command(out, rate, gil=gil), "--pid", str(pid), "--duration", str(seconds)]
    subprocess.run(cmd, capture_output=True, timeout=seconds + 30, check=True)
    return out.read_text()


def attach(pid: int, out: Path, *, rate: int = 50) -> subprocess.Popen[bytes]:
    """Start sampling a process until it exits, idle time included (wall clock, not CPU)."""
    cmd = [*_command(out, rate, idle=True), "--pid", str(pid)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def profile_server(pid: int, seconds: int, out: Path) -> list[str]:
    """Where a server's time goes under load: CPU per thread and py-spy GIL samples.

    ``--gil`` keeps only samples of the thread holding the GIL, so the shares
    are of the interpreter's time, which is what bounds a one-process server;
    work done without the GIL (fsync, SQLite's own C code) shows in the
    threads' CPU instead.
    """
    before, started = thread_cpu(pid), time.monotonic()
    folded = record(pid, out, seconds=seconds, gil=True)
    after, elapsed = thread_cpu(pid), time.monotonic() - started
    names = {}
    for line in folded.splitlines():
        head = line.split(";", 1)[0]  # "thread (TID): NAME"
        tid, _, name = head.removeprefix("thread (").partition("): ")
        if tid.isdigit():
            names[int(tid)] = name
    cpu = sorted(((after[t] - before.get(t, 0.0)) / elapsed, t) for t in after)
    busy = [f"{names.get(t, f'thread {t}')} {share:.0%}" for share, t in reversed(cpu) if share >= 0.01]
    total = sum(share for share, _ in cpu)
    header = f"CPU of the server process: {total:.0%} of one core (" + ", ".join(busy) + ")"
    return [header, *summarise(folded, what="GIL samples")]


def summarise(folded: str, *, what: str = "samples", top: int = 15, thread: str | None = None) -> list[str]:
    """Self time by source line and inclusive time by function, as shares of all samples.

    ``thread`` keeps only the samples of the thread of that name.
    """
    wanted = thread
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[tuple[str, str]] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        thread, *frames = stack.split(";")
        if not frames:
            continue
        thread = thread.partition("): ")[2] or thread
        if wanted is not None and thread != wanted:
            continue
        total += count
        threads[thread] += count
        self_time[_frame_name(frames[-1], line=True)] += count
        for name in {_frame_name(frame, line=False) for frame in frames}:
            inclusive[thread, name] += count
    if not total:
        return ["no samples"]
    lines = [f"{total} {what}: " + ", ".join(f"{t} {n / total:.0%}" for t, n in threads.most_common())]
    lines.append("self time, by line:")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in self_time.most_common(top)]
    lines.append("inclusive time, by function (frames above nearly all of a thread's samples left out):")
    shown = [(n, thread, name) for (thread, name), n in inclusive.items() if n < 0.95 * threads[thread]]
    shown.sort(reverse=True)
    lines += [f"  {n / total:6.1%}  {name} [{thread}]" for n, thread, name in shown[: top + 10]]
    return lines


def _frame_name(frame: str, *, line: bool) -> str:
    # py-spy raw frames look like "function (path/to/module.py:123)".
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    if not line:
        where = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})" if where else name
