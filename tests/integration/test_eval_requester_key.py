"""`coop eval request` on the real simulation engine: the requester key is in no file the run
writes, the report is signed by it, and SIGTERM cleans up like Ctrl-C (no SuperLink or SuperExec
left, no temp folder)."""

from __future__ import annotations

import base64
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from coop.eval import build_label_agreement_model, verify_report
from coop.eval.report import REPORT_TYPE, Report
from coop.governance import public_key
from coop.governance.envelope import open_envelope
from coop.node.collective.settings import Actor
from coop.node.evaluation.flower_run import JOB_FILES, _alive, _descendants
from coop.node.runtime import Node

from factories import contribute, make_member, process
from harness import init_node
from nodeproc import ENV, NodeProcess, coop, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, NodeProcess, str]]:
    root = init_node(tmp_path_factory.mktemp("keyfix") / "node")
    node = Node(root)
    try:
        member, _ = make_member(node, "writer")
        for i in range(12):
            good = i % 2 == 0
            words = "thanks correct helpful" if good else "wrong error broken"
            contribute(
                node, member, text=f"User: q {i}?\nAssistant: {words} {i}", label="good" if good else "fail"
            )
        process(node)
        node.change_settings({"eval_policy.min_records": 5}, actor=Actor("ada", admin=True))
        node_id = node.identity.node_id
    finally:
        node.close()
    proc = NodeProcess(root, port=free_port()).start()
    try:
        yield root, proc, node_id
    finally:
        proc.stop()


def _argv(tmp: Path, served: tuple[Path, NodeProcess, str], *extra: str) -> tuple[list[str], bytes]:
    root, proc, node_id = served
    key = tmp / "builder.key"
    coop("eval", "keygen", str(key))
    model = tmp / "model.npz"
    model.write_bytes(build_label_agreement_model([("thanks", True), ("wrong", False)] * 8, dim=256))
    argv = [sys.executable, "-m", "coop.node.cli", "eval", "request", "--key", str(key)]
    argv += ["--task", "label-agreement", "--model", str(model), "--target", node_id]
    argv += ["--purpose", "keyfix", "--out", str(tmp / "out" / "report.json"), "--timeout", "120"]
    argv += ["--local-node", f"{proc.url},{root / 'keys' / 'eval.token'}", *extra]
    (tmp / "out").mkdir()
    return argv, key.read_bytes()


def _short_tmp() -> Path:
    # Ray keeps its sockets under TMPDIR: a pytest tmp_path is too long a path for them.
    return Path(tempfile.mkdtemp(prefix="ck-", dir="/tmp"))


def _with_key(folder: Path, seed: bytes) -> list[str]:
    needles = (seed, seed.hex().encode(), base64.b64encode(seed))
    found = []
    for path in folder.rglob("*"):
        try:
            data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        except OSError:
            continue  # gone between the listing and the read
        if any(n in data for n in needles):
            found.append(str(path))
    return found


def _ours(marker: str) -> list[int]:
    """Processes whose command line names ``marker`` (this run's folder)."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except (OSError, IndexError):
            continue
        if marker.encode() in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def test_no_file_of_a_run_holds_the_requester_key_and_the_report_is_signed_by_it(
    served: tuple[Path, NodeProcess, str], tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    tmpdir = _short_tmp()
    argv, seed = _argv(tmp_path, served, "--shared-dir", str(shared))
    env = {**ENV, "TMPDIR": str(tmpdir)}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    found: set[str] = set()
    looked = 0
    try:
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            found.update(_with_key(shared, seed) + _with_key(tmpdir, seed))
            looked += 1
            time.sleep(0.5)
        output = proc.communicate(timeout=60)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        shutil.rmtree(tmpdir, ignore_errors=True)
    assert proc.returncode == 0, output
    assert looked > 0 and found == set()
    data = (tmp_path / "out" / "report.json").read_bytes()
    check = verify_report(data)
    assert check, check.problems
    _, payload = open_envelope(data, payload_type=REPORT_TYPE, max_bytes=1 << 26)
    assert msgspec.json.decode(payload, type=Report).signer == public_key(seed).hex()
    assert not any((shared / name).exists() for name in JOB_FILES)  # the run's files went; the folder stays
    assert shared.is_dir()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_a_run_stops_the_superlink_and_removes_the_temp_folder(
    served: tuple[Path, NodeProcess, str], tmp_path: Path, sig: signal.Signals
) -> None:
    tmpdir = _short_tmp()
    argv, _ = _argv(tmp_path, served)
    proc = subprocess.Popen(
        argv, env={**ENV, "TMPDIR": str(tmpdir)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        running: list[int] = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            folders = list(tmpdir.glob("coop-eval-*"))
            running = _ours(str(folders[0])) if folders else []
            if running and (folders[0] / "superlink" / "state.db").exists():
                break
            time.sleep(0.2)
        assert running, "the simulation SuperLink never started"
        time.sleep(1.0)  # let `flwr run` start the SuperExec too
        folder = next(tmpdir.glob("coop-eval-*"))
        started = _descendants(proc.pid)  # flwr run, the SuperLink, its SuperExec, the simulation
        proc.send_signal(sig)
        proc.wait(timeout=120)
        assert proc.returncode != 0
        gone = time.monotonic() + 30
        while any(_alive(pid) for pid in started) and time.monotonic() < gone:
            time.sleep(0.2)
        assert [pid for pid in started if _alive(pid)] == []
        assert _ours(str(folder)) == []
        assert list(tmpdir.glob("coop-eval-*")) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        shutil.rmtree(tmpdir, ignore_errors=True)
