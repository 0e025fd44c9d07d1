"""One evaluation in a process of its own, under the limits the node set (``python -m coop.eval.worker``).

The node starts this for each request it answers, so that a large or slow model
cannot starve ingest of CPU or memory and an evaluator bug cannot take the node
down.  The process first applies its limits to itself: a lower priority
(``--nice``, an absolute niceness; a process can only raise its own), an
address-space limit (``--memory-mb``, RLIMIT_AS), a CPU-time backstop
(``--cpu-seconds``, RLIMIT_CPU; the node's own timeout comes first) and the
number of threads numeric libraries may start (``--threads``).  Only then does
it import the evaluators (numpy, and torch or ONNX Runtime for a language
model), read one msgpack :class:`WorkerTask` from stdin, run
``get(task).load(artifact)`` and ``.statistics(model, records)``, and write one
msgpack :class:`WorkerResult` to stdout: the statistics, or an error kind
(``artifact``, ``failed``, ``memory``, ``unknown_task``) with a one-line message.

Records never reach stderr or the answer: on a failure the worker says only the
stage and the exception types (a model can make an error's text carry a record's
tokens), and logging and warnings are off.  Nothing is read from the
network or from files; the node passes the artifact and the records as bytes.

The node runs this file by path with ``python -P`` so that the limits apply
before any package import; it imports only the standard library and msgspec
at the top, and coop.eval (which imports coop.governance) after the limits.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import resource
import sys
import warnings
from collections.abc import Sequence
from typing import Final

import msgspec

__all__ = ["ERROR_KINDS", "WorkerResult", "WorkerTask", "apply_limits", "main", "run"]

ERROR_KINDS: Final = ("artifact", "failed", "memory", "unknown_task")
_MESSAGE_CHARS: Final = 300
# Numeric libraries read these before they start their thread pools.
_THREAD_VARIABLES: Final = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
# How an allocator other than Python's says it ran out (torch's CPU allocator raises RuntimeError).
_OUT_OF_MEMORY: Final = ("can't allocate memory", "out of memory", "failed to allocate", "bad_alloc")


class WorkerTask(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the node sends: the evaluator's name, the model artifact and the records' JSON bytes."""

    task: str
    artifact: bytes
    records: list[bytes]
    threads: int = 1


class WorkerResult(msgspec.Struct, frozen=True, omit_defaults=True):
    """What comes back: ``statistics``, or ``error`` (one of :data:`ERROR_KINDS`) and ``message``.

    ``nice`` is the niceness the worker ran at (read back with ``os.getpriority``)."""

    statistics: dict[str, int] | None = None
    error: str | None = None
    message: str = ""
    nice: int = 0


def apply_limits(*, nice: int, memory_mb: int, cpu_seconds: int, threads: int) -> None:
    """Lower this process's priority to ``nice``, cap its address space and CPU time, and its threads."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        os.nice(nice - current)
    _limit(resource.RLIMIT_AS, memory_mb * 1024 * 1024)
    # SIGXCPU at the soft limit, SIGKILL one second later if it is ignored.
    _limit(resource.RLIMIT_CPU, cpu_seconds, hard=cpu_seconds + 1)
    for name in _THREAD_VARIABLES:
        os.environ[name] = str(threads)


def _limit(which: int, soft: int, *, hard: int | None = None) -> None:
    _, current_hard = resource.getrlimit(which)
    wanted = soft if hard is None else hard
    if current_hard != resource.RLIM_INFINITY:
        wanted = min(wanted, current_hard)
        soft = min(soft, current_hard)
    resource.setrlimit(which, (soft, wanted))


def _failure(exc: BaseException, stage: str) -> str:
    """What may be said of a failure: the stage and the exception types in its chain, no text."""
    names: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(names) < 3:
        names.append(type(current).__name__)
        current = current.__cause__
    return f"the evaluator failed in {stage} ({' from '.join(names)})"


def _out_of_memory(exc: BaseException) -> bool:
    """A MemoryError anywhere in the chain, or an allocator's own words for one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MemoryError):
            return True
        # ONNX Runtime's own errors (its Fail, RuntimeException...) are not RuntimeErrors.
        if isinstance(current, Exception) and any(w in str(current).lower() for w in _OUT_OF_MEMORY):
            return True
        current = current.__cause__ or current.__context__
    return False


def _load(evaluator: object, artifact: bytes, threads: int) -> object:
    """``evaluator.load(artifact)``, passing ``threads`` only to a load that takes it."""
    load = evaluator.load  # type: ignore[attr-defined]
    try:
        takes_threads = "threads" in inspect.signature(load).parameters
    except (TypeError, ValueError):
        takes_threads = False
    return load(artifact, threads=threads) if takes_threads else load(artifact)


def run(task: WorkerTask) -> WorkerResult:
    """Load and score in this process; every failure is a result, never an exception."""
    from coop.eval.errors import ArtifactError, UnknownEvaluatorError
    from coop.eval.evaluators import get
    from coop.eval.lm import LmPreferenceModel
    from coop.governance import Record

    nice = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        evaluator = get(task.task)
    except UnknownEvaluatorError as exc:
        return WorkerResult(error="unknown_task", message=exc.message[:_MESSAGE_CHARS], nice=nice)
    stage = "load"
    try:
        model = _load(evaluator, task.artifact, task.threads)
        if isinstance(model, LmPreferenceModel):
            # ONNX Runtime has read the model's files: remove them now, not at exit, which a
            # killed child never reaches.
            model.close()
        stage = "statistics"
        decoder = msgspec.json.Decoder(Record)
        records = (decoder.decode(data) for data in task.records)
        statistics = evaluator.statistics(model, records)
        checked = msgspec.convert(statistics, dict[str, int])
    except BaseException as exc:  # every failure of the evaluator is an answer (re-raised below if not)
        if _out_of_memory(exc):
            return WorkerResult(error="memory", message="out of memory", nice=nice)
        if isinstance(exc, ArtifactError) and stage == "load":
            # Loading reads the model only, never a record: its complaint may be shown.
            return WorkerResult(error="artifact", message=exc.message[:_MESSAGE_CHARS], nice=nice)
        if not isinstance(exc, Exception):
            raise  # KeyboardInterrupt, SystemExit: the process is ending anyway
        # Once records are read, an error's text can carry them (a crafted model can put a
        # record's tokens in an index-out-of-range message): only the types leave, and only
        # the types reach the node's log.
        what = _failure(exc, stage)
        print(f"evaluator failed: {what}", file=sys.stderr)
        return WorkerResult(error="failed", message=what, nice=nice)
    return WorkerResult(statistics=checked, nice=nice)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m coop.eval.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--nice", type=int, default=10)
    parser.add_argument("--memory-mb", type=int, default=4096)
    parser.add_argument("--cpu-seconds", type=int, default=610)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    apply_limits(nice=args.nice, memory_mb=args.memory_mb, cpu_seconds=args.cpu_seconds, threads=args.threads)
    # Nothing of a record may reach stderr: evaluators' and libraries' logs and warnings stay off.
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    try:
        task = msgspec.msgpack.decode(sys.stdin.buffer.read(), type=WorkerTask)
        result = run(task)
    except MemoryError:
        result = WorkerResult(error="memory", message="out of memory")
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        result = WorkerResult(error="failed", message=f"the node's message does not decode: {exc}"[:300])
    sys.stdout.buffer.write(msgspec.msgpack.encode(result))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
