"""`coop eval request` as a builder runs it: stderr on a terminal (so progress shows), both streams
kept, and what a normal run must never print."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

import msgspec

from coop.eval.flower import ProgressEvent

from nodeproc import ENV

# What a warning or a deprecation notice looks like, from Python or from Flower.
WARNING: re.Pattern[str] = re.compile(r"Warning|DeprecationWarning|deprecated")


class Run(msgspec.Struct, frozen=True):
    returncode: int
    stdout: str
    terminal: str  # what stderr showed, on a terminal


def coop_on_terminal(*args: str, timeout: float = 600) -> Run:
    """Run `coop ARGS` with stderr on a pseudo-terminal (where progress lines are printed)."""
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the other end is closed
                return
            if not data:
                return
            chunks.append(data)

    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "coop.node.cli", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=ENV,
        )
        os.close(slave)
        slave = -1
        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            stdout, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=30)
            raise
        reader.join(timeout=10)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    terminal = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    return Run(returncode=proc.returncode, stdout=stdout.decode("utf-8", "replace"), terminal=terminal)


def warnings_in(*texts: str) -> list[str]:
    return [line for text in texts for line in text.splitlines() if WARNING.search(line)]


def in_order(text: str, expected: list[str]) -> bool:
    """Each expected line starts a line of ``text``, in this order."""
    lines = text.splitlines()
    at = 0
    for wanted in expected:
        while at < len(lines) and not lines[at].startswith(wanted):
            at += 1
        if at == len(lines):
            return False
        at += 1
    return True


def progress_events(path: Path) -> list[ProgressEvent]:
    decoder = msgspec.json.Decoder(ProgressEvent)
    return [decoder.decode(line) for line in path.read_bytes().splitlines() if line.strip()]
