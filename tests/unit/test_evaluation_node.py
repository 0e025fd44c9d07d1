"""A node answering evaluation requests: every decline reason, noise and budget, and what leaves it."""

from __future__ import annotations

import random
import secrets
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from flwr.app import Context, Message, RecordDict

from coop.eval import (
    Decline,
    Filters,
    NodeAnswer,
    build_label_agreement_model,
    build_request,
    open_attestation,
    open_request,
    verify_report,
)
from coop.eval.flower import EvalJob, make_client_app, run_eval, sign_report
from coop.governance import public_key
from coop.governance.signing import Signer
from coop.node.collective.audit import audit_entries
from coop.node.collective.settings import Actor
from coop.node.evaluation.sandbox import Sandbox
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process

ADMIN = Actor("ada", admin=True)
REQUESTER = bytes(range(32))
NOW_SLACK = 0


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path)
    member, _ = make_member(node)
    rng = random.Random(7)
    for i in range(24):
        good = i % 2 == 0
        words = "thanks correct helpful" if good else "wrong error broken"
        contribute(
            node,
            member,
            text=f"User: question {i}?\nAssistant: answer {i}, {words} {rng.random():.6f}",
            label="good" if good else "fail",
            scope=["node", "federation", "public"][i % 3],
            eval="n" if i == 23 else "y",
            tags=["tax"] if i < 4 else [],
        )
    process(node)
    node.change_settings({"eval_policy.min_records": 10}, actor=ADMIN)
    try:
        yield node
    finally:
        node.close()


def _model() -> bytes:
    data = [("thanks correct helpful", True), ("wrong error broken", False)] * 20
    return build_label_agreement_model(data, dim=256, seed=1)


def _request(node: Node, artifact: bytes, **overrides: Any) -> bytes:
    values: dict[str, Any] = {
        "signer": Signer(REQUESTER),
        "task": "label-agreement",
        "model_name": "m.npz",
        "artifact": artifact,
        "targets": [node.identity.node_id],
        "purpose": "test",
        "filters": Filters(),
        "now": node.now(),
        "lifetime": 3600,
        "nonce": secrets.token_hex(8),
    }
    values.update(overrides)
    return build_request(**values)


def _answer(node: Node, envelope: bytes, artifact: bytes) -> NodeAnswer:
    return node.evaluation.answer(envelope, artifact)


def test_answer_counts_only_eligible_records_and_is_signed(node: Node) -> None:
    model = _model()
    answer = _answer(node, _request(node, model), model)
    assert answer.decline is None
    assert answer.attestation is not None
    attestation, ok = open_attestation(answer.attestation.encode())
    assert ok
    assert attestation.records == 23  # one member said eval=n, whatever the scope of the others
    assert attestation.statistics["n"] == 23
    assert "eval.answer" in [e.action for e in node.store.read(audit_entries)]


def test_answer_filters_select_by_label(node: Node) -> None:
    model = _model()
    answer = _answer(node, _request(node, model, filters=Filters(labels=("good",))), model)
    assert answer.attestation is not None
    attestation, _ = open_attestation(answer.attestation.encode())
    assert attestation.records == 12


def _decline(node: Node, envelope: bytes, artifact: bytes) -> Decline | None:
    return _answer(node, envelope, artifact).decline


def test_decline_bad_signature(node: Node) -> None:
    model = _model()
    envelope = _request(node, model).replace(b'"sig":"', b'"sig":"AAAA', 1)
    assert _decline(node, envelope, model) is Decline.BAD_REQUEST


def test_decline_model_not_matching_the_signed_hash(node: Node) -> None:
    model = _model()
    assert _decline(node, _request(node, model), model + b"x") is Decline.MODEL_HASH_MISMATCH


def test_decline_not_targeted(node: Node) -> None:
    model = _model()
    assert _decline(node, _request(node, model, targets=["a" * 64]), model) is Decline.NOT_TARGETED


def test_decline_quality_freeze_and_embargo(node: Node) -> None:
    model = _model()
    node.change_settings({"quality_freeze": True}, actor=ADMIN)
    assert _decline(node, _request(node, model), model) is Decline.QUALITY_FREEZE
    node.change_settings({"quality_freeze": False, "embargo.on": True}, actor=ADMIN)
    assert _decline(node, _request(node, model), model) is Decline.EMBARGO


def test_partial_embargo_leaves_its_records_out(node: Node) -> None:
    model = _model()
    node.change_settings({"embargo": {"on": True, "tags": ["tax"]}}, actor=ADMIN)
    answer = _answer(node, _request(node, model), model)
    assert answer.attestation is not None
    assert open_attestation(answer.attestation.encode())[0].records == 19


def test_decline_requester_not_on_allowlist(node: Node) -> None:
    model = _model()
    node.change_settings({"eval_policy.requester_allowlist": ["b" * 64]}, actor=ADMIN)
    assert _decline(node, _request(node, model), model) is Decline.NOT_ALLOWED
    node.change_settings({"eval_policy.requester_allowlist": [public_key(REQUESTER).hex()]}, actor=ADMIN)
    assert _decline(node, _request(node, model), model) is None


def test_admin_approval_then_answer_or_refusal(node: Node) -> None:
    model = _model()
    node.change_settings({"eval_policy.approval": "admin"}, actor=ADMIN)
    envelope = _request(node, model)
    assert _decline(node, envelope, model) is Decline.AWAITING_APPROVAL
    pending = node.evaluation.requests()
    assert [r.status for r in pending] == ["pending"]
    node.evaluation.decide(pending[0].hash, approve=True, admin="ada")
    assert _decline(node, envelope, model) is None
    other = _request(node, model)
    _answer(node, other, model)
    refused = next(r for r in node.evaluation.requests() if r.status == "pending")
    node.evaluation.decide(refused.hash, approve=False, admin="ada")
    assert _decline(node, other, model) is Decline.NOT_ALLOWED


def test_decline_too_few_records_and_filters_selecting_nothing(node: Node) -> None:
    model = _model()
    nothing = _request(node, model, filters=Filters(languages=("xx",)))
    answer = _answer(node, nothing, model)
    assert answer.decline is Decline.TOO_FEW_RECORDS
    assert "0 eligible" in (answer.detail or "")
    node.change_settings({"eval_policy.min_records": 100}, actor=ADMIN)
    assert _decline(node, _request(node, model), model) is Decline.TOO_FEW_RECORDS


def test_decline_unknown_task_and_malformed_artifact(node: Node) -> None:
    model = _model()
    assert _decline(node, _request(node, model, task="no-such-task"), model) is Decline.UNKNOWN_TASK
    garbage = b"not a zip at all"
    assert _decline(node, _request(node, garbage), garbage) is Decline.MALFORMED_ARTIFACT


def test_crashing_evaluator_becomes_a_decline(node: Node, tmp_path: Path) -> None:
    # The evaluator runs in a child process: a stand-in worker whose evaluator raises.
    modes = Path(__file__).resolve().parents[1] / "fixtures" / "eval_worker_modes.py"
    command = [sys.executable, "-P", str(modes), "--mode=raise", f"--pid-file={tmp_path / 'pid'}"]
    node.evaluation.sandbox = Sandbox(node.evaluation.limits, command=command)
    model = _model()
    answer = _answer(node, _request(node, model), model)
    assert answer.decline is Decline.EVALUATOR_FAILED
    assert "ZeroDivisionError" in (answer.detail or "")


def test_noise_is_applied_and_the_budget_runs_out(node: Node) -> None:
    model = _model()
    node.change_settings(
        {"eval_policy.noise": "laplace", "eval_policy.epsilon_milli": 1000, "eval_policy.budget_milli": 1500},
        actor=ADMIN,
    )
    first = _answer(node, _request(node, model), model)
    assert first.attestation is not None
    attestation, _ = open_attestation(first.attestation.encode())
    assert attestation.noise.kind == "laplace"
    assert attestation.noise.epsilon_milli == 1000
    assert _decline(node, _request(node, model), model) is Decline.BUDGET_SPENT


class _InProcess:
    """The node's local interface, called in-process (what the loopback endpoint would do)."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def identity(self) -> str:
        return self.node.identity.node_id

    def answer(self, request: bytes, artifact: bytes) -> bytes:
        return msgspec.json.encode(self.node.evaluation.answer(request, artifact))


class _FakeGrid:
    """A Grid that delivers messages straight to ClientApps: Flower's engines without Ray or gRPC."""

    def __init__(self, apps: dict[int, tuple[Any, Context]]) -> None:
        self.apps = apps

    def get_node_ids(self) -> list[int]:
        return sorted(self.apps)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        self.replies: list[Message] = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = secrets.token_hex(8)
            app, context = self.apps[message.metadata.dst_node_id]
            self.replies.append(app(message, context))
        return [r.metadata.reply_to_message_id for r in self.replies]

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [r for r in self.replies if r.metadata.reply_to_message_id in set(message_ids)]


@pytest.fixture
def flower_task() -> Iterator[None]:
    """Flower's messages need the identity of the running task (set by its engines)."""
    from flwr.supercore.task_identity import TaskIdentity

    before = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    try:
        yield
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = before


@pytest.mark.usefixtures("flower_task")
def test_run_eval_replies_carry_numbers_and_signatures_never_records(node: Node) -> None:
    model = _model()
    app = make_client_app(lambda context: _InProcess(node))
    context = Context(run_id=1, node_id=11, node_config={}, state=RecordDict(), run_config={})
    grid = _FakeGrid({11: (app, context)})
    replies: list[Message] = []
    request = _request(node, model)
    job = EvalJob(request=request, artifact=model)
    answers = run_eval(grid, job, now=node.now(), observe=replies.append)  # type: ignore[arg-type]
    verified = open_request(request, now=node.now())
    report = sign_report(verified, answers, now=node.now(), signer=Signer(REQUESTER))
    assert verify_report(report)
    seen = b"".join(
        bytes(value) if isinstance(value, bytes) else str(value).encode()
        for reply in replies
        for record in reply.content.config_records.values()
        for value in record.values()
    )
    assert seen
    from coop.node.contributions.repository import list_by_state
    from coop.node.contributions.submission import ContributionState

    accepted = node.store.read(lambda c: list_by_state(c, ContributionState.ACCEPTED))
    for view in accepted:
        assert view.uid.encode() not in seen
    for word in (b"question 1?", b"answer 3,", b"thanks correct helpful"):
        assert word not in seen
