"""The parent side of an evaluation in a child process (:mod:`coop.eval.worker` is the child).

The node loads nothing of a requester's model itself: for each request it starts
one child with a minimal environment, hands it the task, the artifact and the
eligible records' JSON bytes as its stdin, and waits at most ``eval.timeout_s``.
Its stdin is a file in a private (0700) folder, on tmpfs where there is one, not a
pipe: through a pipe, ``communicate`` wakes ~4,000 times per 16 MB (4 KiB a write)
for as long as the child, at its lower priority, takes to read, and each wake-up
takes the GIL from the event loop.
The child lowers its own priority and caps its memory and CPU time before it
imports anything heavy.  A child that runs out of time is killed with its whole
process group and reaped; one killed by a signal or ending without a result is
a failure described by the signal's name or the exit code (its last line of
stderr goes to the log, 300 characters at most).  No ``preexec_fn``: the node
is multithreaded; the child's own process group is set by ``process_group=0``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

import msgspec

from coop.eval import worker
from coop.eval.worker import WorkerResult, WorkerTask
from coop.node.config import EvalConfig

__all__ = ["ChildOutcome", "Sandbox", "worker_command"]

log = logging.getLogger("coop.eval")

Kind = Literal["ok", "artifact", "failed", "memory", "unknown_task", "time"]
_KINDS: Final = frozenset({"artifact", "failed", "memory", "unknown_task"})
_LOG_CHARS: Final = 300
_REAP_SECONDS: Final = 10.0
# Variables the child inherits from the node (any other, a token or a key included, stays behind).
_PASSED: Final = ("PATH", "LANG", "PYTHONPATH")
_RESULT: Final = msgspec.msgpack.Decoder(WorkerResult)
# Where the child's input is written: memory-backed, so a long evaluation's 16 MB never
# reaches the disk the store's commits wait on (else the system's temporary folder).
_SCRATCH: Final = Path("/dev/shm")  # noqa: S108 - only a private mkdtemp folder is made in it


class ChildOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What one child did: ``ok`` with its statistics, or a kind of failure and a one-line message."""

    kind: Kind
    statistics: dict[str, int] | None = None
    message: str = ""
    nice: int | None = None  # the niceness the child reported running at (None: no result)


def worker_command() -> list[str]:
    """Run the worker by path with ``-P`` (no script folder on sys.path), so its limits come first."""
    return [sys.executable, "-P", str(worker.__file__)]


def _cpu_seconds(timeout_s: float) -> int:
    """The CPU-time backstop: a little above the wall-clock limit, which should always come first."""
    return math.ceil(timeout_s * 1.1) + 2


class Sandbox:
    """Runs evaluations in child processes under ``config``; ``command`` starts the worker."""

    def __init__(self, config: EvalConfig, *, command: Sequence[str] | None = None) -> None:
        self.config = config
        self.command = list(command) if command is not None else worker_command()

    def _argv(self) -> list[str]:
        c = self.config
        return [
            *self.command,
            f"--nice={c.nice}",
            f"--memory-mb={c.memory_mb}",
            f"--cpu-seconds={_cpu_seconds(c.timeout_s)}",
            f"--threads={c.threads}",
        ]

    def _environment(self, tmp: str) -> dict[str, str]:
        env = {name: os.environ[name] for name in _PASSED if os.environ.get(name)}
        env.setdefault("PATH", os.defpath)
        env["OMP_NUM_THREADS"] = str(self.config.threads)
        env["TMPDIR"] = tmp  # the child's own temporary folder, removed after it (even killed)
        return env

    def run(self, task: str, artifact: bytes, records: Sequence[bytes]) -> ChildOutcome:
        """Evaluate ``records`` (JSON bytes) with ``task``'s evaluator over ``artifact`` in a child."""
        payload = msgspec.msgpack.encode(
            WorkerTask(task=task, artifact=artifact, records=list(records), threads=self.config.threads)
        )
        # A child killed over its limits never removes its own temporary files (the unpacked model):
        # it writes them in a folder of its run, which goes when the run ends, however it ends.
        with tempfile.TemporaryDirectory(prefix="coop-eval-run-") as tmp:
            return self._run(payload, tmp)

    def _run(self, payload: bytes, tmp: str) -> ChildOutcome:
        try:
            child = self._start(payload, tmp)
        except OSError as exc:
            log.error("cannot start the evaluation worker: %s", str(exc)[:_LOG_CHARS])
            return ChildOutcome(kind="failed", message="the node could not start the evaluation process")
        del payload
        try:
            out, err = child.communicate(timeout=self.config.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_and_reap(child)
            return ChildOutcome(
                kind="time",
                message=f"time: the evaluation ran over eval.timeout_s = {self.config.timeout_s:g} s",
            )
        except BaseException:
            _kill_and_reap(child)
            raise
        return self._outcome(child.returncode, out, err)

    def _start(self, payload: bytes, tmp: str) -> subprocess.Popen[bytes]:
        """Write ``payload`` to a file only this user can read and start the child on it as stdin.

        The file is unlinked as soon as the child holds it; its pages go when the child ends.
        A tmpfs too small for it (a container's 64 MB ``/dev/shm``) falls back to the disk.
        """
        if _SCRATCH.is_dir() and os.access(_SCRATCH, os.W_OK | os.X_OK):
            try:
                return self._start_in(_SCRATCH, payload, tmp)
            except OSError as exc:
                log.info("evaluation input not written to %s (%s): using the temporary folder", _SCRATCH, exc)
        return self._start_in(None, payload, tmp)

    def _start_in(self, scratch: Path | None, payload: bytes, tmp: str) -> subprocess.Popen[bytes]:
        with tempfile.TemporaryDirectory(prefix="coop-eval-", dir=scratch) as folder:  # mode 0700
            path = os.path.join(folder, "task.msgpack")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                os.lseek(fd, 0, os.SEEK_SET)
                return subprocess.Popen(
                    self._argv(),
                    stdin=fd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=self._environment(tmp),
                    close_fds=True,
                    process_group=0,
                )
            finally:
                os.close(fd)

    def _outcome(self, code: int, out: bytes, err: bytes) -> ChildOutcome:
        last = _last_line(err)
        try:
            result = _RESULT.decode(out)
        except (msgspec.DecodeError, msgspec.ValidationError):
            result = None
        if result is not None and code == 0:
            if result.error is None and result.statistics is not None:
                return ChildOutcome(kind="ok", statistics=result.statistics, nice=result.nice)
            if result.error == "memory":
                return self._memory(result.message, last)
            kind: Kind = "failed"
            if result.error in _KINDS:
                kind = result.error  # type: ignore[assignment]
            if last:
                log.warning("evaluation worker said: %s", last)
            return ChildOutcome(kind=kind, message=result.message, nice=result.nice)
        if code < 0:
            name = _signal_name(-code)
            if -code == signal.SIGXCPU:
                log.warning("evaluation worker hit its CPU-time limit: %s", last)
                return ChildOutcome(
                    kind="time",
                    message=f"time: the evaluation used more CPU than eval.timeout_s = {self.config.timeout_s:g} s allows",
                )
            what = f"the evaluation process was killed by {name}"
        else:
            what = f"the evaluation process exited with code {code} without a result"
        if "MemoryError" in last:
            return self._memory(what, last)
        log.warning("%s; its last words: %s", what, last or "(none)")
        return ChildOutcome(kind="failed", message=what)

    def _memory(self, message: str, last: str) -> ChildOutcome:
        log.warning("evaluation worker ran out of memory: %s %s", message[:_LOG_CHARS], last)
        return ChildOutcome(
            kind="memory",
            message=f"memory: the evaluation needed more than eval.memory_mb = {self.config.memory_mb} MB",
        )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _last_line(err: bytes) -> str:
    lines = err.decode("utf-8", "replace").strip().splitlines()
    return lines[-1].strip()[:_LOG_CHARS] if lines else ""


def _kill_and_reap(child: subprocess.Popen[bytes]) -> None:
    """Kill the child's whole process group (anything it started too), then wait for it, bounded."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        child.kill()
    try:
        child.communicate(timeout=_REAP_SECONDS)
    except subprocess.TimeoutExpired:
        # Something outside the group still holds a pipe: close ours and reap the child alone.
        for pipe in (child.stdin, child.stdout, child.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=_REAP_SECONDS)
