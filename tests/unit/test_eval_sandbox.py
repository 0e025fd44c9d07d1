"""The evaluation's child process: it runs at the node's priority limit, returns the same numbers as
the evaluator in-process, and every way it can fail (time, memory, a crash, a signal) is a clean
outcome that leaves no process behind."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from coop.eval import build_label_agreement_model, get_evaluator
from coop.governance import Record
from coop.node.config import EvalConfig
from coop.node.evaluation.sandbox import Sandbox, worker_command
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process

MODES = Path(__file__).resolve().parents[1] / "fixtures" / "eval_worker_modes.py"


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[bytes]]:
    """The JSON bytes of a dozen processed records, as the node hands them to its child."""
    node = make_node(tmp_path_factory.mktemp("sandbox"))
    member, _ = make_member(node)
    for i in range(12):
        words = "thanks correct helpful" if i % 2 == 0 else "wrong error broken"
        contribute(
            node, member, text=f"User: q {i}?\nAssistant: a {i} {words}", label=["good", "fail"][i % 2]
        )
    process(node)
    try:
        yield [msgspec.json.encode(record) for record in _records(node)]
    finally:
        node.close()


def _records(node: Node) -> list[Record]:
    from coop.node.evaluation import repository

    decoder = msgspec.json.Decoder(Record)
    return [decoder.decode(data) for data, _ in node.store.read(repository.eligible_rows) if data]


def _model(dim: int = 256) -> bytes:
    return build_label_agreement_model(
        [("thanks correct helpful", True), ("wrong error broken", False)], dim=dim
    )


def _modes(tmp_path: Path, mode: str) -> tuple[list[str], Path]:
    pid_file = tmp_path / f"{mode}.pid"
    return [sys.executable, "-P", str(MODES), f"--mode={mode}", f"--pid-file={pid_file}"], pid_file


def _gone(pid: int) -> bool:
    """No such process, or only its exit status is left (an orphan's zombie, awaiting pid 1)."""
    for _ in range(200):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        except (FileNotFoundError, ProcessLookupError):
            return True
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def _children() -> set[int]:
    """This test process's live children (read from /proc)."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == os.getpid():
            found.add(int(entry.name))
    return found


def test_statistics_equal_the_evaluators_in_process(records: list[bytes]) -> None:
    model = _model()
    outcome = Sandbox(EvalConfig()).run("label-agreement", model, records)
    evaluator = get_evaluator("label-agreement")
    decoder = msgspec.json.Decoder(Record)
    expected = evaluator.statistics(evaluator.load(model), [decoder.decode(r) for r in records])
    assert outcome.kind == "ok"
    assert outcome.statistics == expected
    assert expected["n"] == 12


def test_the_child_runs_at_the_configured_niceness(records: list[bytes]) -> None:
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    for nice in (7, 15):
        outcome = Sandbox(EvalConfig(nice=nice)).run("label-agreement", _model(), records)
        assert outcome.kind == "ok"
        assert outcome.nice == max(nice, ours)  # a process can only lower its own priority
    assert os.getpriority(os.PRIO_PROCESS, 0) == ours  # the node's own priority is untouched


def test_a_timeout_far_below_the_need_is_a_time_limit_and_leaves_no_child(records: list[bytes]) -> None:
    before = _children()
    outcome = Sandbox(EvalConfig(timeout_s=0.05)).run("label-agreement", _model(), records)
    assert outcome.kind == "time"
    assert outcome.message.startswith("time:") and "eval.timeout_s = 0.05" in outcome.message
    assert _children() <= before


def test_a_timeout_kills_what_the_child_started_too(tmp_path: Path, records: list[bytes]) -> None:
    command, pid_file = _modes(tmp_path, "hang")
    outcome = Sandbox(EvalConfig(timeout_s=5), command=command).run("label-agreement", _model(), records)
    assert outcome.kind == "time"
    assert _gone(int(pid_file.read_text(encoding="ascii")))
    grandchild = Path(f"{pid_file}.grandchild")
    assert grandchild.exists(), "the stand-in did not start its grandchild within the timeout"
    assert _gone(int(grandchild.read_text(encoding="ascii")))


def test_a_memory_limit_too_small_for_the_model_is_a_memory_limit(records: list[bytes]) -> None:
    # 2**24 float64 weights unpack to 128 MiB and are copied once as they load: far over the
    # ~100 MiB the interpreter and numpy leave of a 200 MiB address space.
    big = _model(dim=2**24)
    outcome = Sandbox(EvalConfig(memory_mb=200)).run("label-agreement", big, records)
    assert outcome.kind == "memory"
    assert outcome.message == "memory: the evaluation needed more than eval.memory_mb = 200 MB"
    roomy = Sandbox(EvalConfig(memory_mb=2048)).run("label-agreement", big, records)
    assert roomy.kind == "ok"


def test_unknown_task_and_malformed_artifact_come_back_as_their_kinds(records: list[bytes]) -> None:
    sandbox = Sandbox(EvalConfig())
    unknown = sandbox.run("no-such-task", _model(), records)
    assert unknown.kind == "unknown_task" and "no-such-task" in unknown.message
    garbage = sandbox.run("label-agreement", b"not a zip at all", records)
    assert garbage.kind == "artifact" and "npz" in garbage.message


def test_an_evaluator_that_raises_is_a_failure_naming_the_exception_type_only(
    tmp_path: Path, records: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    """An error's text can carry a record's tokens (a crafted model can make it): only types leave."""
    command, _ = _modes(tmp_path, "raise")
    outcome = Sandbox(EvalConfig(), command=command).run("label-agreement", _model(), records)
    assert outcome.kind == "failed"
    assert outcome.message == "the evaluator failed in statistics (ZeroDivisionError)"
    assert "boom" not in caplog.text


def test_a_child_killed_by_a_signal_or_exiting_without_a_result_is_a_failure(
    tmp_path: Path, records: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    command, _ = _modes(tmp_path, "sigkill")
    killed = Sandbox(EvalConfig(), command=command).run("label-agreement", _model(), records)
    assert killed.kind == "failed" and killed.message == "the evaluation process was killed by SIGKILL"
    command, _ = _modes(tmp_path, "exit")
    with caplog.at_level("WARNING", logger="coop.eval"):
        quit_ = Sandbox(EvalConfig(), command=command).run("label-agreement", _model(), records)
    assert quit_.kind == "failed"
    assert quit_.message == "the evaluation process exited with code 3 without a result"
    assert "the stand-in gave up" in caplog.text  # its last line of stderr, in the log only


def test_the_child_gets_a_minimal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COOP_SECRET_FOR_TEST", "do-not-pass")
    env = Sandbox(EvalConfig(threads=3))._environment("/tmp/run")
    assert set(env) <= {"PATH", "LANG", "OMP_NUM_THREADS", "PYTHONPATH", "TMPDIR"}
    assert env["OMP_NUM_THREADS"] == "3" and env["TMPDIR"] == "/tmp/run"
    assert worker_command()[:2] == [sys.executable, "-P"]


def test_lm_preference_runs_in_the_child_with_its_threads(tmp_path: Path, records: list[bytes]) -> None:
    tiny = pytest.importorskip("coop.eval.tiny_lm")
    artifact = tiny.pack_folder(tiny.build_tiny_lm(tmp_path / "lm", seed=3))
    evaluator = get_evaluator("lm-preference")
    decoder = msgspec.json.Decoder(Record)
    expected = evaluator.statistics(evaluator.load(artifact), [decoder.decode(r) for r in records])
    outcome = Sandbox(EvalConfig(threads=2)).run("lm-preference", artifact, records)
    assert outcome.kind == "ok", outcome.message
    assert outcome.statistics == expected


def test_a_child_killed_over_its_time_leaves_no_temporary_files(tmp_path: Path, records: list[bytes]) -> None:
    """A killed child never cleans up after itself (an unpacked model can be gigabytes): the node does."""
    command, pid_file = _modes(tmp_path, "litter")
    outcome = Sandbox(EvalConfig(timeout_s=5), command=command).run("label-agreement", _model(), records)
    assert outcome.kind == "time"
    litter = Path(Path(str(pid_file) + ".tmp").read_text(encoding="utf-8"))
    assert litter.name.startswith("coop-lm-") and not litter.exists() and not litter.parent.exists()
