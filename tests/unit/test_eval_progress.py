"""What a model builder sees while a request runs: co-ops answering k/n, each decline with its reason."""

from __future__ import annotations

import threading
from pathlib import Path

import msgspec
import pytest

from coop.eval.flower import EVALUATE, ProgressEvent
from coop.eval.report import Decline, NodeAnswer
from coop.node.errors import StorageError
from coop.node.evaluation.flower_run import _watch, progress_lines
from coop.node.evaluation.requester import answer_lines


def test_answers_are_counted_and_each_decline_says_why() -> None:
    answers = [
        NodeAnswer(node_id="a" * 64, attestation="{}", coop="Alpha"),
        NodeAnswer(node_id="b" * 64, decline=Decline.EMBARGO, coop="Beta"),
        NodeAnswer(node_id="c" * 64, attestation="{}", coop="Gamma"),
        NodeAnswer(node_id="d" * 64, decline=Decline.UNREACHABLE, detail="no answer in time"),
    ]
    assert answer_lines(answers) == [
        "co-ops answering 2/4",
        "  Beta declined (embargo)",
        f"  {'d' * 16} declined (no_answer): no answer in time",
    ]


def test_each_progress_event_is_one_line_for_the_builder() -> None:
    assert progress_lines(
        ProgressEvent(event="sent", named=3, supernodes=4, pushed=4, message_types=(EVALUATE,))
    ) == [
        "sent to 4 SuperNodes",
        "waiting for the co-ops (each SuperNode starts a ClientApp first: ~10 s before any answer)",
    ]
    assert progress_lines(ProgressEvent(event="answer", named=3, answered=1, coop_id="a" * 64)) == [
        "co-ops answering 1/3"
    ]
    declined = ProgressEvent(
        event="answer", named=3, coop_id="b" * 64, coop="Beta", decline="embargo", detail="until May"
    )
    assert progress_lines(declined) == ["Beta declined (embargo): until May"]
    nameless = ProgressEvent(event="answer", named=3, coop_id="c" * 64, decline="no_answer")
    assert progress_lines(nameless) == [f"{'c' * 16} declined (no_answer)"]
    assert progress_lines(ProgressEvent(event="done", pushed=4)) == []


def test_the_requester_tells_each_event_as_it_lands_then_returns_the_report(tmp_path: Path) -> None:
    report, progress = tmp_path / "report.json", tmp_path / "progress.jsonl"
    heard: list[str] = []
    first = ProgressEvent(event="sent", named=2, supernodes=2, pushed=2)
    progress.write_bytes(msgspec.json.encode(first) + b"\n" + b'{"event": "ans')  # a line half written

    def finish() -> None:
        for _ in range(6000):  # the first line is told before the rest is written
            if heard:
                break
            threading.Event().wait(0.01)
        with progress.open("ab") as stream:
            stream.write(b'wer", "named": 2, "answered": 1}\n')
        report.write_bytes(b"signed")

    writer = threading.Thread(target=finish)
    writer.start()
    try:
        assert _watch(report, progress, timeout=60, say=heard.append) == b"signed"
    finally:
        writer.join(timeout=60)
    assert [line for line in heard if not line.startswith("waiting")] == [
        "sent to 2 SuperNodes",
        "co-ops answering 1/2",
    ]


def test_a_serverapp_error_ends_the_wait_with_its_reason(tmp_path: Path) -> None:
    progress = tmp_path / "progress.jsonl"
    progress.write_bytes(b'{"event": "error", "detail": "RequestRefusedError: expired"}\n')
    with pytest.raises(StorageError, match="expired"):
        _watch(tmp_path / "report.json", progress, timeout=60, say=lambda _line: None)
