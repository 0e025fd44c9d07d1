"""The requester's side of `coop eval requests --key KEY` (issue 13): every request signed with
the key, and where each stands from its latest verified report: answered, declined, no answer;
pending without a report, expired past its expiry."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import msgspec
import pytest
from test_eval_publication import (
    MODEL,
    NODES,
    NOW,
    REQUEST,
    REQUESTER,
    VERIFIED,
    _decoded,
    attested,
    declined,
    report_of,
)

from coop.eval import Decline, NodeAnswer, open_request
from coop.node.cli import main
from coop.node.evaluation import ledger
from coop.node.evaluation.ledger import RequestState, TargetState


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "requester.key"
    path.write_bytes(REQUESTER)
    path.chmod(0o600)
    return path


def _states(key: Path, now: int = NOW) -> list[tuple[RequestState, tuple[TargetState, ...]]]:
    return [(e.state, tuple(a.state for a in e.answers)) for e in ledger.entries(key, now=now)]


def test_ledger_signed_request_is_pending_then_expired_without_a_report(key: Path, tmp_path: Path) -> None:
    ledger.record_request(key, VERIFIED, tmp_path / "report.json")
    folder = ledger.ledger_dir(key)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    (file,) = folder.iterdir()
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert json.loads(file.read_bytes())["targets"] == list(VERIFIED.request.targets)
    assert _states(key) == [(RequestState.PENDING, ())]
    assert _states(key, now=VERIFIED.request.expires_at) == [(RequestState.EXPIRED, ())]


def test_ledger_report_sets_each_coops_answer(key: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    ledger.record_request(key, VERIFIED, out)
    unreachable = NodeAnswer(node_id=NODES[2], decline=Decline.UNREACHABLE, detail="no reply in 120 s")
    report = _decoded(report_of([attested(0, "none"), declined(1), unreachable]))
    ledger.record_report(key, report, out, now=NOW + 5)
    (entry,) = ledger.entries(key, now=VERIFIED.request.expires_at + 1)  # reported: never "expired"
    assert entry.state is RequestState.ANSWERED and entry.reported_at == NOW + 5
    by_node = {answer.node_id: answer for answer in entry.answers}
    answered, refused, silent = (by_node[node] for node in NODES)
    assert (answered.state, answered.records, answered.coop) == (TargetState.ANSWERED, 101, "Alder co-op")
    assert (refused.state, refused.reason, refused.detail) == (
        TargetState.DECLINED,
        "too_few_records",
        "7 eligible records",
    )
    assert silent.state is TargetState.NO_ANSWER


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ("declined", RequestState.DECLINED),
        ("silent", RequestState.NO_ANSWER),
    ],
)
def test_ledger_request_state_when_nobody_answered(
    key: Path, tmp_path: Path, answers: str, expected: RequestState
) -> None:
    ledger.record_request(key, VERIFIED, tmp_path / "r.json")
    if answers == "declined":
        given = [declined(0), declined(1, Decline.EMBARGO, "the co-op's embargo is on")]
    else:
        given = [NodeAnswer(node_id=NODES[0], decline=Decline.UNREACHABLE)]
    ledger.record_report(key, _decoded(report_of(given)), tmp_path / "r.json", now=NOW)
    assert _states(key)[0][0] is expected


def test_ledger_resubmitted_request_keeps_its_answers_and_other_requests_list_newest_first(
    key: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    ledger.record_request(key, VERIFIED, out)
    ledger.record_report(key, _decoded(report_of([attested(0, "named")])), out, now=NOW)
    ledger.record_request(key, VERIFIED, out)  # run again (coop eval request --resubmit)
    from test_eval_publication import signed_request

    later = open_request(signed_request(now=NOW + 60), now=NOW + 60, artifact=MODEL)
    ledger.record_request(key, later, tmp_path / "later.json")
    entries = ledger.entries(key, now=NOW + 60)
    assert [e.hash for e in entries] == [later.hash, VERIFIED.hash]
    assert entries[1].state is RequestState.ANSWERED


def test_ledger_ignores_a_report_of_a_request_it_never_signed(key: Path, tmp_path: Path) -> None:
    assert ledger.record_report(key, _decoded(report_of([attested(0, "named")])), tmp_path, now=NOW) is None
    assert ledger.entries(key, now=NOW) == []


def test_cli_eval_requests_key_lists_the_requesters_view(
    key: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    ledger.record_request(key, VERIFIED, out)
    ledger.record_report(key, _decoded(report_of([attested(0, "none"), declined(1)])), out, now=NOW)
    assert main(["eval", "requests", "--key", str(key)]) == 0
    text = capsys.readouterr().out
    assert VERIFIED.hash[:16] in text and "answered" in text
    assert "Alder co-op: answered (101 records)" in text
    assert "Birch co-op: declined (too_few_records): 7 eligible records" in text
    assert main(["eval", "requests", "--key", str(key), "--json"]) == 0
    (item,) = msgspec.json.decode(capsys.readouterr().out)
    assert item["state"] == "answered" and item["hash"] == VERIFIED.hash


def test_cli_eval_requests_needs_dir_or_key_in_one_line(
    key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", "requests"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--key" in err and "DIR" in err
    assert main(["eval", "requests", str(key.parent), "--key", str(key)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_ledger_request_envelope_is_the_one_signed() -> None:
    assert open_request(REQUEST, now=NOW).hash == VERIFIED.hash
