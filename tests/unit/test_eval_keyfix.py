"""The requester's key never leaves the requester: the ServerApp hands back answers (bounded, in
files only their owner reads), the requester signs the report; a run cleans up after itself."""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from test_eval_one_round import (  # the fake Grid and co-ops of the one-round tests
    MODEL,
    NOW,
    REQUESTER,
    SEED_A,
    SEED_B,
    A,
    B,
    _decline,
    _good,
    _Grid,
    _request,
    _Source,
    flower_task,  # noqa: F401  (autouse: Flower's messages need a task identity)
)

from coop.eval import open_request, verify_report
from coop.eval.flower import (
    ANSWER_TIMEOUT,
    MAX_ANSWER_BYTES,
    MAX_WORDS,
    EvalJob,
    ProgressEvent,
    decode_answers,
    encode_answers,
    run_eval,
    serve,
    sign_report,
    write_private,
)
from coop.eval.report import Decline, NodeAnswer
from coop.governance import public_key
from coop.governance.signing import Signer
from coop.node.config import EvalConfig
from coop.node.errors import StorageError
from coop.node.evaluation import flower_run

HUGE = "x" * (17 * 1024 * 1024)


@pytest.fixture
def umask() -> Iterator[None]:
    before = os.umask(0o022)  # SuperExec's: files it creates are 0644 unless asked otherwise
    try:
        yield
    finally:
        os.umask(before)


def test_eval_job_holds_no_key() -> None:
    assert "signer_seed" not in EvalJob.__struct_fields__
    assert set(EvalJob.__struct_fields__) == {"request", "artifact", "timeout", "wait_for_nodes", "poll"}


def test_run_eval_returns_the_answers_and_the_requester_signs_the_report() -> None:
    request = _request([A, B])
    grid = _Grid({11: _Source(A, lambda: _good(request, A, SEED_A)), 12: _Source(B, lambda: _decline(B))})
    answers = run_eval(grid, EvalJob(request=request, artifact=MODEL), now=NOW)  # type: ignore[arg-type]
    assert {a.node_id: a.decline for a in answers} == {A: None, B: Decline.EMBARGO}
    again = decode_answers(encode_answers(answers))
    assert again == answers
    report = sign_report(open_request(request, now=NOW), again, now=NOW, signer=Signer(REQUESTER))
    check = verify_report(report)
    assert check, check.problems
    assert check.report is not None and check.report.signer == public_key(REQUESTER).hex()


def test_a_huge_decline_is_cut_and_an_oversized_answer_is_dropped_the_others_stay() -> None:
    request = _request([A, B])
    huge_decline = msgspec.json.encode(
        NodeAnswer(node_id=B, decline=Decline.EMBARGO, detail="x" * (1 << 20), coop="B" * 5000)
    )
    oversized = msgspec.json.encode(
        NodeAnswer(node_id=A, decline=Decline.EMBARGO, detail="y" * MAX_ANSWER_BYTES)
    )
    sources = {
        10: _Source(A, lambda: oversized),  # claims co-op A with 4 MiB and more: never read
        11: _Source(A, lambda: _good(request, A, SEED_A, n=9)),
        12: _Source(B, lambda: huge_decline),
    }
    events: list[ProgressEvent] = []
    answers = run_eval(
        _Grid(sources),  # type: ignore[arg-type]
        EvalJob(request=request, artifact=MODEL),
        now=NOW,
        progress=events.append,
    )
    kept = {a.node_id: a for a in answers}
    assert kept[A].decline is None and kept[A].attestation is not None
    assert kept[B].decline is Decline.EMBARGO
    assert len(kept[B].detail or "") == MAX_WORDS
    assert len(kept[B].coop) == MAX_WORDS
    assert all(len(e.detail or "") <= MAX_WORDS and len(e.coop) <= MAX_WORDS for e in events)
    report = sign_report(open_request(request, now=NOW), answers, now=NOW, signer=Signer(REQUESTER))
    assert len(report) < 1024 * 1024
    check = verify_report(report)
    assert check and check.report is not None
    assert check.report.aggregate.records == 9  # A's valid attestation is not lost


def test_a_17_mib_decline_is_dropped_and_the_other_coops_attestation_stays() -> None:
    request = _request([A, B])
    huge = msgspec.json.encode(NodeAnswer(node_id=B, decline=Decline.EMBARGO, detail=HUGE))
    sources = {11: _Source(A, lambda: _good(request, A, SEED_A, n=9)), 12: _Source(B, lambda: huge)}
    events: list[ProgressEvent] = []
    answers = run_eval(
        _Grid(sources),  # type: ignore[arg-type]
        EvalJob(request=request, artifact=MODEL),
        now=NOW,
        progress=events.append,
    )
    kept = {a.node_id: a for a in answers}
    assert (kept[B].decline, kept[B].detail) == (Decline.UNREACHABLE, "no answer in time")
    assert sum(len(e.detail or "") for e in events) < MAX_WORDS
    report = sign_report(open_request(request, now=NOW), answers, now=NOW, signer=Signer(REQUESTER))
    check = verify_report(report)
    assert check and check.report is not None and check.report.aggregate.records == 9


def test_progress_lines_cut_a_huge_decline() -> None:
    event = ProgressEvent(event="answer", named=1, coop_id=A, coop=HUGE, decline="embargo", detail=HUGE)
    (line,) = flower_run.progress_lines(event)
    assert len(line) < 2 * MAX_WORDS + 40


def test_answers_are_decoded_strictly_and_bounded() -> None:
    with pytest.raises(ValueError, match="malformed"):
        decode_answers(b'[{"node_id": 1}]')
    with pytest.raises(ValueError, match="malformed"):
        decode_answers(b"not json")
    with pytest.raises(ValueError, match="bytes"):
        decode_answers(b" " * (64 * 1024 * 1024 + 1))


def test_the_requester_says_so_when_the_answers_file_is_malformed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_flwr_run(app: Path, home: Path, connection: object, *, run_config: str, **_: object) -> None:
        (tmp_path / "answers.json").write_bytes(b'{"not": "a list"}')

    monkeypatch.setattr(flower_run, "flwr_run", fake_flwr_run)
    job = EvalJob(request=b"r", artifact=b"m", timeout=5)
    with pytest.raises(StorageError, match=r"answers\.json is not usable"):
        flower_run._run(job, tmp_path, {}, say=lambda _line: None)


def test_the_serverapp_writes_its_files_0600_whatever_the_umask(tmp_path: Path, umask: None) -> None:
    request = _request([A, B])
    grid = _Grid(
        {11: _Source(A, lambda: _good(request, A, SEED_A)), 12: _Source(B, lambda: _good(request, B, SEED_B))}
    )
    out, progress = tmp_path / "answers.json", tmp_path / "progress.jsonl"
    serve(grid, EvalJob(request=request, artifact=MODEL), out, progress, now=NOW)  # type: ignore[arg-type]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(progress.stat().st_mode) == 0o600
    assert len(decode_answers(out.read_bytes())) == 2
    assert progress.read_bytes().count(b"\n") == 4  # sent, two answers, done
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_the_serverapp_never_writes_through_a_planted_symlink(tmp_path: Path) -> None:
    request = _request([A])
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    progress = tmp_path / "progress.jsonl"
    progress.symlink_to(victim)
    grid = _Grid({11: _Source(A, lambda: _good(request, A, SEED_A))})
    with pytest.raises(FileExistsError):
        serve(grid, EvalJob(request=request, artifact=MODEL), tmp_path / "a.json", progress, now=NOW)  # type: ignore[arg-type]
    out = tmp_path / "answers.json"
    out.symlink_to(victim)  # write_private renames over the link, never writes into its target
    write_private(out, b"[]")
    assert victim.read_bytes() == b"keep me"
    assert not out.is_symlink() and out.read_bytes() == b"[]"


def test_the_requesters_job_files_are_0600_and_removed_from_a_named_shared_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask: None
) -> None:
    seen: dict[str, int] = {}

    def fake_flwr_run(app: Path, home: Path, connection: object, *, run_config: str, **_: object) -> None:
        home.mkdir(parents=True)
        for name in ("request", "model"):
            seen[name] = stat.S_IMODE((tmp_path / "shared" / name).stat().st_mode)
        write_private(tmp_path / "shared" / "answers.json", b"[]")
        (tmp_path / "shared" / "progress.jsonl").write_bytes(b'{"event": "done"}\n')

    monkeypatch.setattr(flower_run, "flwr_run", fake_flwr_run)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "mine.txt").write_text("the builder's")
    job = EvalJob(request=b"r", artifact=b"m", timeout=5)
    with flower_run._shared(str(shared)) as folder:
        assert flower_run._run(job, folder, {}, say=lambda _line: None) == []
    assert seen == {"request": 0o600, "model": 0o600}
    assert sorted(p.name for p in shared.iterdir()) == ["mine.txt"]


def test_sigterm_and_sighup_interrupt_like_ctrl_c_and_the_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        cleaned = False
        try:
            with flower_run.interruptible():
                os.kill(os.getpid(), sig)
                for _ in range(1000):  # the handler runs between two bytecodes
                    signal.getsignal(sig)
        except KeyboardInterrupt as exc:
            cleaned = str(exc) == sig.name
        assert cleaned
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)) == before


def test_the_clientapp_waits_longer_than_the_nodes_own_limit() -> None:
    assert EvalConfig().timeout_s < ANSWER_TIMEOUT
