"""A node answers evaluation requests under the limits its ``[eval]`` config sets: each limit
declines in its own way, a crashing evaluator is a clean decline, and the numbers equal the
evaluator's in-process numbers."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from coop.eval import (
    Decline,
    Filters,
    build_label_agreement_model,
    build_request,
    get_evaluator,
    open_attestation,
)
from coop.governance import Record
from coop.governance.signing import Signer
from coop.node.collective.settings import Actor
from coop.node.config import EvalConfig, load_config
from coop.node.errors import StorageError
from coop.node.evaluation import repository
from coop.node.evaluation.sandbox import ChildOutcome, Sandbox
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process

ADMIN = Actor("ada", admin=True)
MODES = Path(__file__).resolve().parents[1] / "fixtures" / "eval_worker_modes.py"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path)
    member, _ = make_member(node)
    for i in range(12):
        words = "thanks correct helpful" if i % 2 == 0 else "wrong error broken"
        contribute(
            node, member, text=f"User: q {i}?\nAssistant: a {i} {words}", label=["good", "fail"][i % 2]
        )
    process(node)
    node.change_settings({"eval_policy.min_records": 10}, actor=ADMIN)
    try:
        yield node
    finally:
        node.close()


def _limits(node: Node, **values: Any) -> None:
    """Give the node's evaluation these ``[eval]`` limits (as node.toml would)."""
    node.evaluation.limits = EvalConfig(**values)
    node.evaluation.sandbox = Sandbox(node.evaluation.limits)


def _model(dim: int = 256) -> bytes:
    return build_label_agreement_model(
        [("thanks correct helpful", True), ("wrong error broken", False)], dim=dim
    )


def _request(node: Node, artifact: bytes) -> bytes:
    return build_request(
        signer=Signer(bytes(range(32))),
        task="label-agreement",
        model_name="m.npz",
        artifact=artifact,
        targets=[node.identity.node_id],
        purpose="test",
        filters=Filters(),
        now=node.now(),
        lifetime=3600,
        nonce=secrets.token_hex(8),
    )


def _stand_in(node: Node, tmp_path: Path, mode: str) -> None:
    command = [sys.executable, "-P", str(MODES), f"--mode={mode}", f"--pid-file={tmp_path / mode}"]
    node.evaluation.sandbox = Sandbox(node.evaluation.limits, command=command)


def test_config_eval_section_defaults_and_each_key_is_checked_by_name(tmp_path: Path) -> None:
    assert EvalConfig() == EvalConfig(max_model_mb=1024, timeout_s=600, memory_mb=4096, nice=10, threads=1)
    path = tmp_path / "node.toml"
    for body, key in (
        ("max_model_mb = 0", "eval.max_model_mb"),
        ("timeout_s = -1", "eval.timeout_s"),
        ("memory_mb = -5", "eval.memory_mb"),
        ("nice = 20", "eval.nice"),
        ("nice = -1", "eval.nice"),
        ("threads = 0", "eval.threads"),
        ("nice_level = 3", "nice_level"),
    ):
        path.write_text(f'[node]\nname = "x"\n[eval]\n{body}\n', encoding="utf-8")
        with pytest.raises(StorageError, match=key):
            load_config(path)
    path.write_text('[node]\nname = "x"\n[eval]\ntimeout_s = 30\nnice = 0\n', encoding="utf-8")
    assert load_config(path).eval == EvalConfig(timeout_s=30.0, nice=0)


def test_a_model_over_max_model_mb_is_declined_before_any_child_runs(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    _limits(node, max_model_mb=1)
    started: list[str] = []

    def refuse(self: Sandbox, task: str, artifact: bytes, records: Any) -> ChildOutcome:
        started.append(task)
        raise AssertionError("no child may start for a model over the cap")

    monkeypatch.setattr(Sandbox, "run", refuse)
    large = secrets.token_bytes(1024 * 1024 + 1)
    answer = node.evaluation.answer(_request(node, large), large)
    assert answer.decline is Decline.MODEL_TOO_LARGE
    assert "eval.max_model_mb = 1 MB" in (answer.detail or "")
    assert started == []
    # The request is remembered, with why it was declined.
    (seen,) = node.evaluation.requests()
    assert (seen.state, seen.reason) == ("declined", "model_too_large")


def test_a_timeout_far_below_the_need_declines_limit_exceeded_time(node: Node) -> None:
    _limits(node, timeout_s=0.05)
    model = _model()
    answer = node.evaluation.answer(_request(node, model), model)
    assert answer.decline is Decline.LIMIT_EXCEEDED
    assert (answer.detail or "").startswith("time:") and "0.05 s" in (answer.detail or "")


def test_a_memory_limit_too_small_for_the_model_declines_limit_exceeded_memory(node: Node) -> None:
    _limits(node, memory_mb=200)
    big = _model(dim=2**24)  # 128 MiB of weights once unpacked, copied as they load
    answer = node.evaluation.answer(_request(node, big), big)
    assert answer.decline is Decline.LIMIT_EXCEEDED
    assert answer.detail == "memory: the evaluation needed more than eval.memory_mb = 200 MB"


def test_crashes_are_clean_declines_and_the_node_keeps_serving(node: Node, tmp_path: Path) -> None:
    model = _model()
    garbage = b"not a zip at all"
    assert node.evaluation.answer(_request(node, garbage), garbage).decline is Decline.MALFORMED_ARTIFACT
    _stand_in(node, tmp_path, "sigkill")
    killed = node.evaluation.answer(_request(node, model), model)
    assert killed.decline is Decline.EVALUATOR_FAILED
    assert killed.detail == "the evaluation process was killed by SIGKILL"
    _limits(node)  # the real worker again
    served = node.evaluation.answer(_request(node, model), model)
    assert served.decline is None and served.attestation is not None


def test_the_attested_statistics_equal_the_evaluators_in_process(node: Node) -> None:
    model = _model()
    answer = node.evaluation.answer(_request(node, model), model)
    assert answer.attestation is not None
    attestation, ok = open_attestation(answer.attestation.encode())
    assert ok
    decoder = msgspec.json.Decoder(Record)
    records = [decoder.decode(data) for data, _ in node.store.read(repository.eligible_rows) if data]
    evaluator = get_evaluator("label-agreement")
    assert attestation.statistics == evaluator.statistics(evaluator.load(model), records)
    assert attestation.records == 12


def test_the_node_loads_nothing_of_the_model_itself(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    evaluator = get_evaluator("label-agreement")

    def no_load(artifact: bytes) -> object:
        raise AssertionError("the node loaded the model in its own process")

    monkeypatch.setattr(type(evaluator), "load", staticmethod(no_load))
    model = _model()
    answer = node.evaluation.answer(_request(node, model), model)
    assert answer.decline is None  # the child has its own, unpatched, evaluator
