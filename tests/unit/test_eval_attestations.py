"""Reports sum only attestations that check; a bad one is a ``bad_attestation`` decline, never a crash.

Issue 11, item 21: the ServerApp checks each attestation (signature by the key
of a co-op the request names, request hash, task, model hash, statistics
schema) before summing it, and :func:`verify_report` re-runs the same checks
and the same :func:`tally`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec
import pytest
from flwr.app import Context, Message, RecordDict

from coop.eval import (
    Attestation,
    AttestationError,
    Decline,
    Expected,
    Filters,
    NodeAnswer,
    Noise,
    Report,
    build_label_agreement_model,
    build_report,
    build_request,
    check_attestation,
    get_evaluator,
    open_request,
    render_markdown,
    seal_attestation,
    tally,
    verify_report,
)
from coop.eval.flower import EvalJob, make_client_app, run_eval, sign_report
from coop.eval.report import REPORT_TYPE
from coop.governance import canonical_bytes, public_key
from coop.governance.envelope import open_envelope, seal
from coop.governance.signing import Signer

REQUESTER = bytes(range(32))
SEED_A = bytes([1]) * 32
SEED_B = bytes([2]) * 32
SEED_OUTSIDER = bytes([3]) * 32
A = public_key(SEED_A).hex()
B = public_key(SEED_B).hex()
OUTSIDER = public_key(SEED_OUTSIDER).hex()
NOW = 1_800_000_000
EVALUATOR = get_evaluator("label-agreement")
SCHEMA = frozenset(EVALUATOR.statistic_sensitivity())
MODEL = build_label_agreement_model([("thanks", True), ("wrong", False)] * 4, dim=256, seed=1)


def _request(targets: Iterable[str] = (A, B), artifact: bytes = MODEL) -> bytes:
    return build_request(
        signer=Signer(REQUESTER),
        task="label-agreement",
        model_name="m.npz",
        artifact=artifact,
        targets=list(targets),
        purpose="test",
        filters=Filters(),
        now=NOW,
        lifetime=3600,
        nonce=secrets.token_hex(8),
    )


REQUEST = _request()
VERIFIED = open_request(REQUEST, now=NOW, artifact=MODEL)
OTHER_REQUEST = open_request(_request(), now=NOW, artifact=MODEL)


def _stats(n: int) -> dict[str, int]:
    stats = dict.fromkeys(SCHEMA, 0)
    stats.update(n=n, tp=n // 2, tn=n - n // 2, log_loss_nano=n * 10**8, hist_fail_100=n // 2)
    stats["hist_good_900"] = n - n // 2
    return stats


def _attestation(node_id: str, n: int = 10, **overrides: Any) -> Attestation:
    values: dict[str, Any] = {
        "node_id": node_id,
        "request_hash": VERIFIED.hash,
        "task": "label-agreement",
        "model_sha256": VERIFIED.request.model_sha256,
        "records": n,
        "statistics": _stats(n),
        "noise": Noise(),
        "issued_at": NOW,
        "coop": f"co-op {node_id[:4]}",
    }
    values.update(overrides)
    return Attestation(**values)


def _sealed(attestation: Attestation, seed: bytes) -> str:
    return seal_attestation(attestation, Signer(seed)).decode()


def _good(node: str, seed: bytes, n: int = 10) -> NodeAnswer:
    return NodeAnswer(node_id=node, attestation=_sealed(_attestation(node, n), seed))


def _build(answers: list[NodeAnswer]) -> bytes:
    return build_report(
        request_envelope=REQUEST,
        request_hash=VERIFIED.hash,
        task="label-agreement",
        model_sha256=VERIFIED.request.model_sha256,
        purpose="test",
        answers=answers,
        finalize=EVALUATOR.finalize,
        schema=SCHEMA,
        created_at=NOW,
        signer=Signer(REQUESTER),
    )


def _verify(report: bytes) -> Any:
    return verify_report(report, finalize=EVALUATOR.finalize, schema=SCHEMA)


def _decoded(report: bytes) -> Report:
    _, payload = open_envelope(report, payload_type=REPORT_TYPE, max_bytes=1 << 26)
    return msgspec.json.decode(payload, type=Report)


def _flip_sig(text: str) -> str:
    envelope = msgspec.json.decode(text)
    sig = envelope["signatures"][0]["sig"]
    envelope["signatures"][0]["sig"] = ("B" if sig[0] == "A" else "A") + sig[1:]
    return msgspec.json.encode(envelope).decode()


def _stats_with(**changes: int) -> dict[str, int]:
    return {**_stats(10), **changes}


# Each case is node A's answer; node B answers well every time.
BAD_ANSWERS: list[Any] = [
    pytest.param(
        lambda: NodeAnswer(node_id=A, attestation=_sealed(_attestation(A), SEED_OUTSIDER)),
        "not signed by the co-op",
        id="forged-signature-another-key",
    ),
    pytest.param(
        lambda: NodeAnswer(node_id=A, attestation=_flip_sig(_sealed(_attestation(A), SEED_A))),
        "not signed by the co-op",
        id="forged-signature-altered-bytes",
    ),
    pytest.param(
        lambda: NodeAnswer(node_id=A, attestation=_sealed(_attestation(B), SEED_B)),
        "not signed by the co-op",
        id="another-nodes-attestation",
    ),
    pytest.param(
        lambda: NodeAnswer(node_id=A, attestation=_sealed(_attestation(B), SEED_A)),
        "names another co-op",
        id="signed-by-a-but-naming-b",
    ),
    pytest.param(
        lambda: NodeAnswer(
            node_id=A, attestation=_sealed(_attestation(A, request_hash=OTHER_REQUEST.hash), SEED_A)
        ),
        "another request",
        id="another-requests-hash",
    ),
    pytest.param(
        lambda: NodeAnswer(node_id=A, attestation=_sealed(_attestation(A, model_sha256="0" * 64), SEED_A)),
        "another model",
        id="wrong-model-hash",
    ),
    pytest.param(
        lambda: NodeAnswer(node_id=A, attestation=_sealed(_attestation(A, task="lm-preference"), SEED_A)),
        "another task",
        id="another-task",
    ),
    pytest.param(
        lambda: NodeAnswer(
            node_id=A, attestation=_sealed(_attestation(A, statistics=_stats_with(bogus=1)), SEED_A)
        ),
        "schema",
        id="malformed-stats-unknown-key",
    ),
    pytest.param(
        lambda: NodeAnswer(
            node_id=A,
            attestation=_sealed(
                _attestation(A, statistics={k: v for k, v in _stats(10).items() if k != "tp"}), SEED_A
            ),
        ),
        "schema",
        id="malformed-stats-missing-key",
    ),
    pytest.param(
        lambda: NodeAnswer(
            node_id=A, attestation=_sealed(_attestation(A, statistics=_stats_with(tp=-4)), SEED_A)
        ),
        "out of range",
        id="malformed-stats-negative",
    ),
    pytest.param(
        lambda: NodeAnswer(
            node_id=A,
            # not canonical (a canonical encoder refuses it): a hostile node's own bytes
            attestation=seal(
                msgspec.json.encode(_attestation(A, statistics=_stats_with(fp=2**60))),
                "application/vnd.coop-flywheel.eval-attestation+json",
                [Signer(SEED_A)],
            ).decode(),
        ),
        "out of range",
        id="malformed-stats-huge",
    ),
    pytest.param(
        lambda: NodeAnswer(node_id=A, attestation=_sealed(_attestation(A, records=99), SEED_A)),
        "statistic n",
        id="records-not-n",
    ),
    pytest.param(
        lambda: NodeAnswer(
            node_id=A,
            attestation=_sealed(_attestation(A, noise=Noise(kind="laplace", epsilon_milli=0)), SEED_A),
        ),
        "noise",
        id="noise-without-epsilon",
    ),
    pytest.param(
        lambda: NodeAnswer(
            node_id=A,
            attestation=seal(
                b'{"node_id": "' + A.encode() + b'", "statistics": []}',
                "application/vnd.coop-flywheel.eval-attestation+json",
                [Signer(SEED_A)],
            ).decode(),
        ),
        "not an attestation",
        id="signed-but-malformed-payload",
    ),
    pytest.param(lambda: NodeAnswer(node_id=A, attestation="{not json"), "unreadable", id="not-an-envelope"),
    pytest.param(
        lambda: NodeAnswer(node_id=A, attestation=_sealed(_attestation(A), SEED_A), decline=Decline.EMBARGO),
        "both attests and declines",
        id="attests-and-declines",
    ),
]


@pytest.mark.parametrize(("make", "reason"), BAD_ANSWERS)
def test_build_report_bad_attestation_becomes_a_decline_and_is_not_summed(
    make: Callable[[], NodeAnswer], reason: str
) -> None:
    report = _build([make(), _good(B, SEED_B, n=6)])
    check = _verify(report)
    assert check, check.problems  # the report is consistent: A is a decline, B alone is summed
    decoded = check.report
    by_node = {a.node_id: a for a in decoded.answers}
    assert by_node[A].decline is Decline.BAD_ATTESTATION
    assert by_node[A].attestation is None
    assert reason in (by_node[A].detail or "")
    assert decoded.aggregate.nodes == 1
    assert decoded.aggregate.records == 6
    assert decoded.aggregate.statistics == dict(sorted(_stats(6).items()))
    assert "bad_attestation" in render_markdown(decoded)


def test_build_report_answer_from_a_co_op_the_request_does_not_name_is_left_out() -> None:
    report = _build([_good(A, SEED_A), _good(B, SEED_B), _good(OUTSIDER, SEED_OUTSIDER, n=1000)])
    assert _verify(report)
    decoded = _decoded(report)
    assert [a.node_id for a in decoded.answers] == sorted([A, B])
    assert decoded.aggregate.records == 20
    # and a report that lists one, even declining, does not verify
    extra = NodeAnswer(node_id=OUTSIDER, decline=Decline.EMBARGO)
    edited = _resigned(report, lambda r: msgspec.structs.replace(r, answers=(*r.answers, extra)))
    assert any("not a co-op the request names" in p for p in _verify(edited).problems)


def test_build_report_second_answer_of_one_co_op_is_never_summed() -> None:
    decoded = _decoded(_build([_good(A, SEED_A), _good(A, SEED_A, n=50), _good(B, SEED_B)]))
    assert decoded.aggregate.records == 20
    assert [a.node_id for a in decoded.answers] == sorted([A, B])


def test_build_report_good_answers_verify_and_tally_is_the_sum() -> None:
    report = _build([_good(A, SEED_A, n=10), _good(B, SEED_B, n=6)])
    check = _verify(report)
    assert check, check.problems
    assert check.report is not None
    assert check.report.aggregate.records == 16
    assert check.report.aggregate.statistics["n"] == 16
    assert check.report.aggregate.metrics
    assert set(check.report.per_node) == {A, B}
    again = tally([_attestation(A, 10), _attestation(B, 6)], EVALUATOR.finalize)
    assert again.aggregate == check.report.aggregate
    assert again.per_node == check.report.per_node


def test_check_attestation_accepts_the_genuine_one() -> None:
    expected = Expected(
        request_hash=VERIFIED.hash,
        task="label-agreement",
        model_sha256=VERIFIED.request.model_sha256,
        targets=frozenset({A, B}),
        schema=SCHEMA,
    )
    assert check_attestation(_sealed(_attestation(A), SEED_A), node_id=A, expected=expected).records == 10
    with pytest.raises(AttestationError):
        check_attestation(_sealed(_attestation(A), SEED_A), node_id=B, expected=expected)


# -- verify_report: a report someone edited (and re-signed) does not verify ---------------------


def _resigned(report: bytes, edit: Callable[[Report], Report], seed: bytes = REQUESTER) -> bytes:
    return seal(canonical_bytes(edit(_decoded(report))), REPORT_TYPE, [Signer(seed)])


def _replace_answer(report: Report, node: str, answer: NodeAnswer) -> Report:
    answers = tuple(answer if a.node_id == node else a for a in report.answers)
    return msgspec.structs.replace(report, answers=answers)


def _agg(report: Report, **changes: Any) -> Report:
    return msgspec.structs.replace(report, aggregate=msgspec.structs.replace(report.aggregate, **changes))


TAMPERED: list[Any] = [
    pytest.param(
        lambda r: _agg(r, statistics={**r.aggregate.statistics, "tp": r.aggregate.statistics["tp"] + 1}),
        "not the sum",
        id="sums-do-not-add-up",
    ),
    pytest.param(lambda r: _agg(r, records=r.aggregate.records + 5), "not the sum", id="records-inflated"),
    pytest.param(lambda r: _agg(r, nodes=3), "not the sum", id="nodes-inflated"),
    pytest.param(
        lambda r: _agg(r, metrics={**r.aggregate.metrics, "accuracy": "0.999999"}),
        "metrics",
        id="metrics-do-not-follow",
    ),
    pytest.param(
        lambda r: msgspec.structs.replace(r, per_node={A: {"accuracy": "1.000000"}, B: r.per_node[B]}),
        "metrics",
        id="per-node-metrics-do-not-follow",
    ),
    pytest.param(
        lambda r: _replace_answer(
            r, A, NodeAnswer(node_id=A, attestation=_sealed(_attestation(A), SEED_OUTSIDER))
        ),
        "not signed by the co-op",
        id="forged-signature",
    ),
    pytest.param(
        lambda r: _replace_answer(r, A, NodeAnswer(node_id=A, attestation=_sealed(_attestation(B), SEED_B))),
        "not signed by the co-op",
        id="another-nodes-attestation",
    ),
    pytest.param(
        lambda r: _replace_answer(
            r,
            A,
            NodeAnswer(
                node_id=A, attestation=_sealed(_attestation(A, request_hash=OTHER_REQUEST.hash), SEED_A)
            ),
        ),
        "another request",
        id="another-requests-hash",
    ),
    pytest.param(
        lambda r: _replace_answer(
            r, A, NodeAnswer(node_id=A, attestation=_sealed(_attestation(A, model_sha256="1" * 64), SEED_A))
        ),
        "another model",
        id="wrong-model-hash",
    ),
    pytest.param(
        lambda r: _replace_answer(
            r,
            A,
            NodeAnswer(node_id=A, attestation=_sealed(_attestation(A, statistics=_stats_with(x=1)), SEED_A)),
        ),
        "schema",
        id="malformed-stats",
    ),
    pytest.param(
        lambda r: msgspec.structs.replace(r, answers=tuple(a for a in r.answers if a.node_id != A)),
        "missing from the report",
        id="a-named-co-op-left-out",
    ),
    pytest.param(
        lambda r: msgspec.structs.replace(r, answers=(*r.answers, r.answers[0])),
        "appears twice",
        id="an-answer-counted-twice",
    ),
    pytest.param(
        lambda r: msgspec.structs.replace(r, request=_request().decode()),
        "does not match its hash",
        id="another-request-in-the-report",
    ),
]


@pytest.mark.parametrize(("edit", "problem"), TAMPERED)
def test_verify_report_tampered_report_fails(edit: Callable[[Report], Report], problem: str) -> None:
    report = _build([_good(A, SEED_A, n=10), _good(B, SEED_B, n=6)])
    assert _verify(report)
    check = _verify(_resigned(report, edit))
    assert not check
    assert any(problem in p for p in check.problems), check.problems


def test_verify_report_signature_of_the_report_itself_must_check() -> None:
    report = _build([_good(A, SEED_A), _good(B, SEED_B)])
    edited = _resigned(report, lambda r: msgspec.structs.replace(r, signer=OUTSIDER))
    check = _verify(edited)
    assert not check
    assert any("own signature" in p for p in check.problems)


def test_verify_report_garbage_never_raises() -> None:
    for data in (b"", b"{}", b"[1,2]", b'{"payloadType": 1}', "\ud800".encode("utf-8", "surrogatepass")):
        assert not verify_report(data)


# -- the ServerApp: one bad node does not end the run ---------------------------------------------


class _Source:
    def __init__(self, node_id: str, answer: Callable[[], bytes]) -> None:
        self.node_id = node_id
        self._answer = answer

    def identity(self) -> str:
        return self.node_id

    def answer(self, request: bytes, artifact: bytes) -> bytes:
        return self._answer()


class _FakeGrid:
    """A Grid that delivers messages straight to ClientApps: Flower's engines without Ray or gRPC."""

    def __init__(self, apps: dict[int, tuple[Any, Context]]) -> None:
        self.apps = apps

    def get_node_ids(self) -> list[int]:
        return sorted(self.apps)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        self.replies: list[Message] = []
        for m in messages:
            m.metadata.__dict__["_message_id"] = secrets.token_hex(8)
            self.replies.append(self.apps[m.metadata.dst_node_id][0](m, self.apps[m.metadata.dst_node_id][1]))
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
@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda: msgspec.json.encode(NodeAnswer(node_id=A, attestation="garbage")), id="garbage"),
        pytest.param(lambda: b"not json at all", id="unreadable-answer"),
        pytest.param(lambda: msgspec.json.encode(_good(B, SEED_B)), id="answer-naming-another-co-op"),
        pytest.param(
            lambda: msgspec.json.encode(
                NodeAnswer(node_id=A, attestation=_sealed(_attestation(A), SEED_OUTSIDER))
            ),
            id="forged",
        ),
    ],
)
def test_run_eval_one_bad_node_is_a_decline_and_the_run_completes(bad: Callable[[], bytes]) -> None:
    sources = {11: _Source(A, bad), 12: _Source(B, lambda: msgspec.json.encode(_good(B, SEED_B, n=7)))}
    apps = {
        flower_id: (
            make_client_app(lambda context, s=source: s),
            Context(run_id=1, node_id=flower_id, node_config={}, state=RecordDict(), run_config={}),
        )
        for flower_id, source in sources.items()
    }
    job = EvalJob(request=REQUEST, artifact=MODEL)
    answers = run_eval(_FakeGrid(apps), job, now=NOW)  # type: ignore[arg-type]
    report = sign_report(open_request(REQUEST, now=NOW), answers, now=NOW, signer=Signer(REQUESTER))
    check = _verify(report)
    assert check, check.problems
    assert check.report is not None
    by_node = {a.node_id: a for a in check.report.answers}
    assert by_node[A].decline is Decline.BAD_ATTESTATION
    assert check.report.aggregate.records == 7


def test_render_markdown_a_nodes_words_stay_in_their_cell() -> None:
    hostile = NodeAnswer(
        node_id=A, decline=Decline.EMBARGO, detail="x |\n| forged | yes | 999 | |", coop="evil | co-op"
    )
    check = _verify(_build([hostile, _good(B, SEED_B)]))
    assert check.report is not None
    text = render_markdown(check.report)
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert not any(line.startswith("| forged") for line in rows)
    row = next(line for line in rows if "embargo" in line)
    assert len(re.findall(r"(?<!\\)\|", row)) == 6  # five cells, whatever the node wrote
