"""Federated evaluation on Flower's real simulation engine (Ray) over five real node processes."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import msgspec
import pytest
from eval_cli import Run, coop_on_terminal, in_order, warnings_in

from coop.eval import build_label_agreement_model, get_evaluator
from coop.eval.report import REPORT_TYPE, Report
from coop.governance import Channel, Record
from coop.governance.envelope import open_envelope
from coop.node.collective.settings import Actor
from coop.node.contributions.repository import insert_contribution
from coop.node.contributions.submission import ContributionRequest
from coop.node.ids import uuid7
from coop.node.runtime import Node

from factories import make_member
from harness import init_node
from nodeproc import NodeProcess, coop, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 20261122
GOOD_WORDS = ["thanks", "clear", "correct", "helpful", "exactly", "great"]
FAIL_WORDS = ["wrong", "error", "incorrect", "confused", "mistake", "broken"]
ADMIN = Actor("ada", admin=True)


def _chat(rng: random.Random, good: bool, marker: str) -> str:
    words = rng.sample(GOOD_WORDS if good else FAIL_WORDS, 3) + rng.sample(GOOD_WORDS + FAIL_WORDS, 2)
    return f"User: question {marker} about taxes?\nAssistant: answer {marker}: {' '.join(words)}."


def _fill(root: Path, rng: random.Random, count: int, *, prefix: str) -> None:
    node = Node(root)
    try:
        member, _ = make_member(node, "writer")
        for i in range(count):
            good = rng.random() < 0.5
            body = {
                "label": "good" if good else "fail",
                "consent": True,
                "format": "text",
                "content": _chat(rng, good, f"{prefix}{i:04d}"),
                "eval": "n" if i % 10 == 9 else "y",  # some members keep their chats out of evaluation
                "scope": rng.choice(["node", "federation", "public"]),
            }
            request = msgspec.json.decode(msgspec.json.encode(body), type=ContributionRequest)
            sub, _ = node.build_submission(request, channel=Channel.API, member=member)
            node.store.write(
                lambda c, s=sub: insert_contribution(  # type: ignore[misc]
                    c, uid=uuid7(), member=member, submission=s, now=node.now(), idempotency=None, client=None
                )
            )
        with node.processor_lock():
            node.process_pending()
    finally:
        node.close()


def _eligible_records(root: Path) -> list[Record]:
    with closing(sqlite3.connect(f"file:{root / 'coop.sqlite3'}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT t.record FROM contributions c JOIN contents t ON t.seq = c.seq"
            " WHERE c.state IN ('accepted', 'released') AND c.eval = 'y' ORDER BY c.seq"
        ).fetchall()
    return [msgspec.json.decode(r[0], type=Record) for r in rows]


class Five:
    def __init__(self, roots: list[Path], nodes: list[NodeProcess], ids: list[str]) -> None:
        self.roots, self.nodes, self.ids = roots, nodes, ids


@pytest.fixture(scope="module")
def five(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Five]:
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    base = tmp_path_factory.mktemp("eval")
    roots, nodes, ids = [], [], []
    for i in range(5):
        root = init_node(base / f"node{i}")
        _fill(root, rng, 60 if i != 4 else 8, prefix=f"n{i}-")
        node = Node(root)
        try:
            node.change_settings({"eval_policy.min_records": 10}, actor=ADMIN)
            if i == 2:
                node.change_settings({"quality_freeze": True}, actor=ADMIN)
            if i == 3:
                node.change_settings({"eval_policy.approval": "admin"}, actor=ADMIN)
            ids.append(node.identity.node_id)
        finally:
            node.close()
        roots.append(root)
        nodes.append(NodeProcess(root, port=free_port()).start())
    try:
        yield Five(roots, nodes, ids)
    finally:
        for node in nodes:
            node.stop()


def _request(five: Five, tmp: Path, model: bytes, *extra: str) -> tuple[Any, bytes, Run]:
    key = tmp / "builder.key"
    if not key.exists():
        coop("eval", "keygen", str(key))
    model_path = tmp / "model.npz"
    model_path.write_bytes(model)
    out = tmp / "report.json"
    args = ["eval", "request", "--key", str(key), "--task", "label-agreement", "--model", str(model_path)]
    args += [
        "--purpose",
        "Does our reward model agree with co-op members?",
        "--out",
        str(out),
        "--timeout",
        "120",
    ]
    for node_id in five.ids:
        args += ["--target", node_id]
    for node, root in zip(five.nodes, five.roots, strict=True):
        args += ["--local-node", f"{node.url},{root / 'keys' / 'eval.token'}"]
    run = coop_on_terminal(*args, *extra, timeout=900)
    assert run.returncode == 0, run.terminal
    # A normal run prints no Python warning and no Flower deprecation notice.
    assert warnings_in(run.stdout, run.terminal) == []
    data = out.read_bytes()
    _, payload = open_envelope(data, payload_type=REPORT_TYPE, max_bytes=1 << 26)
    return msgspec.json.decode(payload, type=Report), data, run


def _model(seed: int) -> bytes:
    rng = random.Random(seed)
    training = [(_chat(rng, good, "train"), good) for good in (rng.random() < 0.5 for _ in range(200))]
    return build_label_agreement_model(training, seed=seed)


def test_eval_simulation_aggregate_equals_central_and_declines_are_named(five: Five, tmp_path: Path) -> None:
    model = _model(SEED)
    report, data, run = _request(five, tmp_path, model)
    # The builder watched it happen: one round sent to every SuperNode, answers as they came.
    assert in_order(
        run.terminal,
        ["request signed (", "sent to 5 SuperNodes", "co-ops answering 1/5", "co-ops answering 2/5"],
    ), run.terminal
    assert in_order(run.terminal, ["sent to 5 SuperNodes", "report verified"])
    assert "declined (quality_freeze)" in run.terminal
    assert "declined (awaiting_admin_approval)" in run.terminal
    answers = {a.node_id: a for a in report.answers}
    assert set(answers) == set(five.ids)
    assert answers[five.ids[2]].decline == "quality_freeze"
    assert answers[five.ids[3]].decline == "awaiting_admin_approval"
    assert answers[five.ids[4]].decline == "too_few_records"
    answered = [five.ids[0], five.ids[1]]
    assert all(answers[n].attestation for n in answered)

    # The federated aggregate is exactly the metric computed centrally over the pooled records.
    evaluator = get_evaluator("label-agreement")
    pooled = _eligible_records(five.roots[0]) + _eligible_records(five.roots[1])
    central = evaluator.statistics(evaluator.load(model), pooled)
    assert report.aggregate.statistics == dict(sorted(central.items()))
    assert report.aggregate.records == len(pooled)
    assert report.aggregate.metrics == {k: f"{v:.6f}" for k, v in evaluator.finalize(central).items()}

    # What came back holds no record content: numbers and signatures only.
    text = data.decode()
    for root in five.roots:
        for record in _eligible_records(root)[:30]:
            assert record.content[1].content not in text
            assert record.uid not in text

    verified = coop("eval", "verify", str(tmp_path / "report.json"), "--json")
    assert json.loads(verified.stdout)["ok"] is True
    assert (
        "| quality_freeze" in (tmp_path / "report.md").read_text()
        or "quality_freeze" in (tmp_path / "report.md").read_text()
    )


def test_eval_simulation_admin_approval_then_answer(five: Five, tmp_path: Path) -> None:
    model = _model(SEED + 1)
    first, _, _ = _request(five, tmp_path, model)
    assert {a.node_id: a.decline for a in first.answers}[five.ids[3]] == "awaiting_admin_approval"
    coop("eval", "approve", str(five.roots[3]), first.request_hash[:16])
    # The same signed request again: now the approving co-op answers.
    second, _, _ = _request(
        five,
        tmp_path,
        (tmp_path / "model.npz").read_bytes(),
        "--resubmit",
        str(tmp_path / "report.request.json"),
    )
    assert {a.node_id: a.decline for a in second.answers}[five.ids[3]] is None
    assert second.aggregate.nodes == 3


def test_eval_report_tampered_fails_verification(five: Five, tmp_path: Path) -> None:
    _, data, _ = _request(five, tmp_path, _model(SEED + 2))
    tampered = data.replace(b'"payload":"', b'"payload":"A', 1)
    path = tmp_path / "tampered.json"
    path.write_bytes(tampered)
    result = coop("eval", "verify", str(path), check=False)
    assert result.returncode == 9
