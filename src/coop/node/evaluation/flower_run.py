"""Running our Flower App (``DEPLOY_APP``) with ``flwr run`` on either engine, and watching it.

* **Deployment**: ``flwr run`` against the SuperLink the requester names; the
  SuperNodes run next to each co-op's node.
* **Simulation**: a SuperLink of our own in simulation mode (``flower-superlink
  --simulation``) on a free 127.0.0.1 port, with its own ``FLWR_HOME`` in a temp
  folder, and ``flwr run … --federation-config "num-supernodes=N"``; one virtual
  SuperNode per ``--local-node URL,TOKEN_FILE`` (the run config carries the list
  as ``coop-local-nodes``).  The SuperLink, and whatever it started, is always
  stopped when the run ends, fails or is interrupted (Ctrl-C, SIGTERM or SIGHUP).

Either way the ServerApp reads the job (the signed request and the model, never
a key) from files in a shared folder, appends its progress to
``progress.jsonl`` there (one :class:`ProgressEvent` per line) and writes the
answers it kept to ``answers.json``; the requester tails both every 0.25 s,
bounded by the job's timeout, tells the builder each step as it happens, and
returns the answers for the report to be signed here.  The run's files are
removed when it ends, from a folder named with ``--shared-dir`` too (the folder
stays).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

import httpx
import msgspec
import tomli_w

from coop.eval.flower import (
    MAX_ANSWERS_BYTES,
    MAX_WORDS,
    EvalJob,
    ProgressEvent,
    decode_answers,
    parse_local_node,
    write_private,
)
from coop.eval.report import NodeAnswer
from coop.node.errors import InputError, StorageError

__all__ = [
    "DEPLOY_APP",
    "SimulationSuperLink",
    "deployment",
    "federation_config",
    "flwr_run",
    "progress_lines",
    "simulation",
]

# The Flower app `flwr run` ships: installed with the package, so a plain `pip install` has it.
DEPLOY_APP: Final = Path(__file__).resolve().parent / "flower_app"
POLL: Final = 0.25  # seconds between two looks at the progress and answers files
# What one run puts in the shared folder; all of it is removed when the run ends.
JOB_FILES: Final = ("request", "model", "answers.json", "progress.jsonl", "superlink", "flwr-home")
_BIN: Final = Path(sys.executable).parent
_EVENT: Final = msgspec.json.Decoder(ProgressEvent)


def progress_lines(event: ProgressEvent) -> list[str]:
    """What the builder reads for one step of the run."""
    if event.event == "sent":
        return [
            f"sent to {event.supernodes} SuperNode{'s' if event.supernodes != 1 else ''}",
            # Flower starts a ClientApp process per message at each SuperNode, which polls every 3 s.
            "waiting for the co-ops (each SuperNode starts a ClientApp first: ~10 s before any answer)",
        ]
    if event.event == "answer":
        if event.decline is None:
            return [f"co-ops answering {event.answered}/{event.named}"]
        who = event.coop[:MAX_WORDS] or event.coop_id[:16]
        detail = f": {event.detail[:MAX_WORDS]}" if event.detail else ""
        return [f"{who} declined ({event.decline[:MAX_WORDS]}){detail}"]
    return []


def _env(home: Path) -> dict[str, str]:
    # Nothing of a run leaves this machine: no telemetry, no update checks, no usage stats.
    return {
        **os.environ,
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PATH": f"{_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM and SIGHUP end the run the way Ctrl-C does (a KeyboardInterrupt, so every cleanup
    runs); a second signal while that cleanup runs is ignored.  The handlers before are restored
    after; off the main thread (where Python takes no handler) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal fired
        if not fired:
            fired = True
            raise KeyboardInterrupt(signal.Signals(signum).name)

    before = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _remove_job(folder: Path) -> None:
    """The run's files out of a folder the builder named (the folder and anything else stay)."""
    for name in JOB_FILES:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        for tmp in folder.glob(f".{name}.*.tmp"):  # a write cut short (write_private)
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _shared(shared_dir: str | None) -> Iterator[Path]:
    """The folder the ServerApp reads the job from: the one named (the run's files removed after),
    or a temp one (removed after)."""
    if shared_dir:
        folder = Path(shared_dir)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            yield folder
        finally:
            _remove_job(folder)
        return
    folder = Path(tempfile.mkdtemp(prefix="coop-eval-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(
    job: EvalJob,
    shared: Path,
    connection: dict[str, object],
    *,
    say: Callable[[str], None],
    run_config: Sequence[str] = (),
    federation_config: str | None = None,
) -> list[NodeAnswer]:
    """``flwr run`` our app on the SuperLink of ``connection``; the answers the ServerApp kept."""
    request, model = shared / "request", shared / "model"
    write_private(request, job.request)
    write_private(model, job.artifact)
    answers = shared / "answers.json"
    progress = shared / "progress.jsonl"
    answers.unlink(missing_ok=True)
    progress.unlink(missing_ok=True)
    config = " ".join(
        [
            f"coop-request-file='{request}'",
            f"coop-artifact-file='{model}'",
            f"coop-answers-file='{answers}'",
            f"coop-progress-file='{progress}'",
            f"coop-timeout={job.timeout}",
            f"coop-wait-for-nodes={job.wait_for_nodes}",
            *run_config,
        ]
    )
    flwr_run(
        DEPLOY_APP, shared / "flwr-home", connection, run_config=config, federation_config=federation_config
    )
    data = _watch(answers, progress, timeout=job.timeout * 3, say=say)
    try:
        return decode_answers(data)
    except ValueError as exc:
        raise StorageError(f"the SuperLink's answers.json is not usable: {exc}"[:400]) from None


def flwr_run(
    app: Path,
    home: Path,
    connection: dict[str, object],
    *,
    run_config: str,
    federation_config: str | None = None,
) -> None:
    """Start a run of the Flower App in folder ``app`` (``flwr run``); StorageError if it did not start."""
    # `flwr run APP CONNECTION` reads the SuperLink connection from FLWR_HOME/config.toml.
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        tomli_w.dumps({"superlink": {"default": "coop", "coop": connection}}), encoding="utf-8"
    )
    flwr = shutil.which("flwr") or str(_BIN / "flwr")
    command = [flwr, "run", str(app), "coop", "--run-config", run_config]
    if federation_config:
        command += ["--federation-config", federation_config]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, env=_env(home))
    if result.returncode != 0:
        raise StorageError(f"flwr run failed: {(result.stderr or result.stdout).strip()[-400:]}")


def federation_config(supernodes: int) -> str:
    """The simulation runtime's settings: one virtual SuperNode per co-op node, one CPU per ClientApp
    actor, two for Ray in all (what the simulation engine used before)."""
    return f"num-supernodes={supernodes} client-resources-num-cpus=1 init-args-num-cpus=2"


def _watch(answers: Path, progress: Path, *, timeout: float, say: Callable[[str], None]) -> bytes:
    """Tell each progress event as it lands, until the answers are there (or the time is up);
    their bytes, read up to one past :data:`MAX_ANSWERS_BYTES`."""
    offset = 0
    deadline = time.monotonic() + timeout
    while True:
        done = answers.exists()  # looked at first: every event before the answers is read below
        if progress.exists():
            with progress.open("rb") as stream:
                stream.seek(offset)
                chunk = stream.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            offset += len(complete)
            for line in complete.splitlines():
                try:
                    event = _EVENT.decode(line)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue
                if event.event == "error":
                    detail = (event.detail or "")[:400]
                    raise StorageError(f"the evaluation failed on the SuperLink: {detail}")
                for text in progress_lines(event):
                    say(text)
        if done:
            with answers.open("rb") as stream:
                return stream.read(MAX_ANSWERS_BYTES + 1)
        if time.monotonic() >= deadline:
            raise StorageError(f"no answers from the SuperLink within {timeout:g} s")
        time.sleep(POLL)


def deployment(
    job: EvalJob,
    *,
    superlink: str,
    root_certificates: str | None,
    shared_dir: str | None,
    say: Callable[[str], None],
) -> list[NodeAnswer]:
    """Flower's deployment engine: `flwr run` against the SuperLink, with our app; the answers."""
    connection: dict[str, object] = {"address": superlink}
    if root_certificates:
        connection["root-certificates"] = str(Path(root_certificates).resolve())
    else:
        connection["insecure"] = True
    with interruptible(), _shared(shared_dir) as shared:
        return _run(job, shared, connection, say=say)


def simulation(
    job: EvalJob, *, local_nodes: Sequence[str], shared_dir: str | None, say: Callable[[str], None]
) -> list[NodeAnswer]:
    """Flower's simulation runtime: a SuperLink of our own, one virtual SuperNode per co-op node;
    the answers."""
    entries = []
    for text in local_nodes:
        try:
            url, token_file = parse_local_node(text)
        except ValueError:
            raise InputError("--local-node takes URL,TOKEN_FILE", field="--local-node") from None
        if ";" in text or "'" in text:
            raise InputError("--local-node cannot hold ';' or a quote", field="--local-node")
        try:
            Path(token_file).read_text(encoding="ascii")
        except OSError as exc:
            raise InputError(f"cannot read {token_file}: {exc.strerror}", field="--local-node") from None
        entries.append(f"{url},{Path(token_file).resolve()}")
    with (
        interruptible(),
        _shared(shared_dir) as shared,
        SimulationSuperLink(shared / "superlink") as address,
    ):
        return _run(
            job,
            shared,
            {"address": address, "insecure": True},
            say=say,
            run_config=[f"coop-local-nodes='{';'.join(entries)}'"],
            federation_config=federation_config(len(entries)),
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs (from /proc; none where there is no /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1].isdigit():
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < 10_000:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class SimulationSuperLink:
    """``flower-superlink --simulation`` on a free loopback port, in its own process group and
    FLWR_HOME; leaving the ``with`` block stops it and every process it started."""

    def __init__(self, folder: Path, *, start_timeout: float = 60.0) -> None:
        self.folder = folder
        self.port = _free_port()
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        home = self.folder / "flwr-home"
        home.mkdir(exist_ok=True)
        command = [
            str(_BIN / "flower-superlink"),
            "--insecure", "--simulation", "--isolation", "subprocess",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--database", str(self.folder / "state.db"),
            "--disable-runtime-dependency-installation",
        ]  # fmt: skip
        with (self.folder / "superlink.log").open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_env(home),
                cwd=self.folder,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self._stop()
            raise
        return f"127.0.0.1:{self.port}"

    def __exit__(self, *_exc: object) -> None:
        self._stop()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                # Its log goes with the run's files: say its last words here.
                log = ""
                with contextlib.suppress(OSError):
                    log = (self.folder / "superlink.log").read_bytes()[-400:].decode(errors="replace")
                raise StorageError(
                    f"the simulation SuperLink exited ({self.process.returncode}): {log.strip()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1.0).is_success:
                    return
            time.sleep(POLL)
        raise StorageError(f"the simulation SuperLink did not start within {self.start_timeout:g} s")

    def _stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        children = _descendants(process.pid)  # SuperExec and the simulation run in sessions of their own
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            alive = [pid for pid in children if _alive(pid)]
            for pid in alive:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 10
            while any(_alive(pid) for pid in alive) and time.monotonic() < deadline:
                time.sleep(0.1)


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[-1].split()
    return bool(fields) and fields[0] != "Z"
