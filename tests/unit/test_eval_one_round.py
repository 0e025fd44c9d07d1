"""One Flower round per evaluation: the ServerApp pushes the evaluation once to every SuperNode,
a ClientApp whose co-op is not named never calls its node, and two replies claiming one co-op
cannot let a hostile SuperNode pre-empt the real answer."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec
import pytest
from flwr.app import Context, Message, RecordDict

from coop.eval import build_label_agreement_model, build_request, get_evaluator, open_request, verify_report
from coop.eval.flower import EVALUATE, EvalJob, ProgressEvent, make_client_app, run_eval, sign_report
from coop.eval.report import REPORT_TYPE, Attestation, Decline, NodeAnswer, Noise, Report, seal_attestation
from coop.eval.request import Filters
from coop.governance import public_key
from coop.governance.envelope import open_envelope
from coop.governance.signing import Signer

REQUESTER = bytes(range(32))
SEED_A, SEED_B, SEED_C = bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32
A, B, C = (public_key(seed).hex() for seed in (SEED_A, SEED_B, SEED_C))
NOW = 1_800_000_000
EVALUATOR = get_evaluator("label-agreement")
SCHEMA = frozenset(EVALUATOR.statistic_sensitivity())
MODEL = build_label_agreement_model([("thanks", True), ("wrong", False)] * 4, dim=256, seed=1)


def _request(targets: Iterable[str]) -> bytes:
    return build_request(
        signer=Signer(REQUESTER),
        task="label-agreement",
        model_name="m.npz",
        artifact=MODEL,
        targets=list(targets),
        purpose="test",
        filters=Filters(),
        now=NOW,
        lifetime=3600,
        nonce=secrets.token_hex(8),
    )


def _good(request: bytes, node_id: str, seed: bytes, n: int = 10) -> bytes:
    verified = open_request(request, now=NOW, artifact=MODEL)
    stats = dict.fromkeys(SCHEMA, 0)
    stats.update(n=n, tp=n // 2, tn=n - n // 2, log_loss_nano=n * 10**8, hist_fail_100=n // 2)
    stats["hist_good_900"] = n - n // 2
    attestation = Attestation(
        node_id=node_id,
        request_hash=verified.hash,
        task="label-agreement",
        model_sha256=verified.request.model_sha256,
        records=n,
        statistics=stats,
        noise=Noise(),
        issued_at=NOW,
        coop=f"co-op {node_id[:4]}",
    )
    sealed = seal_attestation(attestation, Signer(seed)).decode()
    return msgspec.json.encode(NodeAnswer(node_id=node_id, attestation=sealed, coop=f"co-op {node_id[:4]}"))


def _decline(node_id: str, reason: Decline = Decline.EMBARGO) -> bytes:
    return msgspec.json.encode(NodeAnswer(node_id=node_id, decline=reason, detail="said the SuperNode"))


class _Source:
    """A co-op node as its ClientApp reaches it; counts the evaluations it was asked for."""

    def __init__(self, node_id: str, answer: Callable[[], bytes]) -> None:
        self.node_id = node_id
        self._answer = answer
        self.asked = 0

    def identity(self) -> str:
        return self.node_id

    def answer(self, request: bytes, artifact: bytes) -> bytes:
        self.asked += 1
        return self._answer()


class _Grid:
    """Flower's Grid without Ray or gRPC: replies come back one per pull, in the order pushed;
    a ``silent`` SuperNode never replies."""

    def __init__(self, sources: dict[int, _Source], *, silent: Iterable[int] = ()) -> None:
        self.apps = {
            flower_id: (
                make_client_app(lambda context, s=source: s),
                Context(run_id=1, node_id=flower_id, node_config={}, state=RecordDict(), run_config={}),
            )
            for flower_id, source in sources.items()
        }
        self.silent = set(silent)
        self.pushes: list[list[Message]] = []
        self.pending: list[Message] = []

    def get_node_ids(self) -> list[int]:
        return sorted(self.apps)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        batch = list(messages)
        self.pushes.append(batch)
        ids = []
        for message in batch:
            message.metadata.__dict__["_message_id"] = secrets.token_hex(8)
            ids.append(message.metadata.message_id)
            if message.metadata.dst_node_id not in self.silent:
                app, context = self.apps[message.metadata.dst_node_id]
                self.pending.append(app(message, context))
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        wanted = set(message_ids)
        for reply in self.pending:
            if reply.metadata.reply_to_message_id in wanted:
                self.pending.remove(reply)
                return [reply]
        return []


@pytest.fixture(autouse=True)
def flower_task() -> Iterator[None]:
    """Flower's messages need the identity of the running task (set by its engines)."""
    from flwr.supercore.task_identity import TaskIdentity

    before = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    try:
        yield
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = before


def _run(request: bytes, grid: _Grid, **job: Any) -> tuple[Report, list[ProgressEvent]]:
    events: list[ProgressEvent] = []
    answers = run_eval(
        grid,  # type: ignore[arg-type]
        EvalJob(request=request, artifact=MODEL, **job),
        now=NOW,
        progress=events.append,
    )
    data = sign_report(open_request(request, now=NOW), answers, now=NOW, signer=Signer(REQUESTER))
    assert verify_report(data, finalize=EVALUATOR.finalize, schema=SCHEMA)
    _, payload = open_envelope(data, payload_type=REPORT_TYPE, max_bytes=1 << 26)
    return msgspec.json.decode(payload, type=Report), events


def test_one_push_of_one_message_type_to_every_supernode_and_the_unnamed_node_is_never_asked() -> None:
    request = _request([A, B])
    sources = {
        11: _Source(A, lambda: _good(request, A, SEED_A)),
        12: _Source(B, lambda: _good(request, B, SEED_B, n=7)),
        13: _Source(C, lambda: _good(request, C, SEED_C)),  # not named
    }
    grid = _Grid(sources)
    report, events = _run(request, grid)
    assert len(grid.pushes) == 1
    assert sorted(m.metadata.dst_node_id for m in grid.pushes[0]) == [11, 12, 13]
    assert {m.metadata.message_type for m in grid.pushes[0]} == {EVALUATE}
    assert (sources[11].asked, sources[12].asked, sources[13].asked) == (1, 1, 0)
    assert {a.node_id: a.decline for a in report.answers} == {A: None, B: None}
    assert report.aggregate.records == 17
    assert [(e.event, e.answered, e.named) for e in events] == [
        ("sent", 0, 2),
        ("answer", 1, 2),
        ("answer", 2, 2),
        ("done", 2, 2),
    ]
    assert events[0].pushed == events[-1].pushed == 3
    assert events[-1].replies == 3


@pytest.mark.parametrize("hostile_first", [True, False])
@pytest.mark.parametrize(
    "hostile",
    [
        pytest.param(lambda request: _decline(A), id="unsigned-decline"),
        pytest.param(lambda request: _good(request, A, SEED_C), id="forged-attestation"),
        pytest.param(lambda request: b"not json", id="unreadable"),
    ],
)
def test_a_hostile_claim_never_pre_empts_the_real_answer(
    hostile: Callable[[bytes], bytes], hostile_first: bool
) -> None:
    request = _request([A, B])
    real, fake = (11, 10) if hostile_first else (10, 11)  # pushed, and answered, in id order
    sources = {
        real: _Source(A, lambda: _good(request, A, SEED_A, n=9)),
        fake: _Source(A, lambda: hostile(request)),  # a second SuperNode claiming co-op A
        12: _Source(B, lambda: _decline(B)),
    }
    report, events = _run(request, _Grid(sources))
    answers = {a.node_id: a for a in report.answers}
    assert answers[A].decline is None and answers[A].attestation is not None
    assert report.aggregate.records == 9
    assert answers[B].decline is Decline.EMBARGO
    declines = [e for e in events if e.event == "answer" and e.decline is not None]
    assert ("embargo", B) in {(e.decline, e.coop_id) for e in declines}


def test_of_two_declines_for_one_coop_the_first_stays() -> None:
    request = _request([A])
    sources = {
        10: _Source(A, lambda: _decline(A, Decline.EMBARGO)),
        11: _Source(A, lambda: _decline(A, Decline.QUALITY_FREEZE)),
    }
    report, _ = _run(request, _Grid(sources))
    assert [(a.node_id, a.decline) for a in report.answers] == [(A, Decline.EMBARGO)]


def test_a_named_coop_without_a_reply_is_unreachable_and_says_why() -> None:
    request = _request([A, B])
    report, _ = _run(request, _Grid({11: _Source(A, lambda: _good(request, A, SEED_A))}))
    assert {a.node_id: (a.decline, a.detail) for a in report.answers}[B] == (
        Decline.UNREACHABLE,
        "no SuperNode serves this co-op",
    )
    sources = {11: _Source(A, lambda: _good(request, A, SEED_A)), 12: _Source(B, lambda: _decline(B))}
    report, events = _run(request, _Grid(sources, silent=[12]), timeout=0.2, poll=0.01)
    assert {a.node_id: (a.decline, a.detail) for a in report.answers}[B] == (
        Decline.UNREACHABLE,
        "no answer in time",
    )
    assert events[-1].event == "done" and events[-1].replies == 1
