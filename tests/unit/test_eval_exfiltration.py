"""A model crafted to fail with a record's text in its error message learns nothing from the failure.

The graph packs nine tokens of the first record into one integer and gathers at that index from a
one-row table, so ONNX Runtime fails with "idx=<the packed characters>". Before the fix, that text
went back to the requester in the decline's detail (9 characters per request, no budget spent).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from pathlib import Path

import numpy as np
import onnx
import pytest
import tokenizers
from onnx import TensorProto, helper, numpy_helper

from coop.eval import Decline, Filters, build_request
from coop.governance.signing import Signer
from coop.node.collective.settings import Actor
from coop.node.evaluation.requester import read_model
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process

SECRET = "hunter2"


def _leaking_model(folder: Path) -> bytes:
    folder.mkdir()
    vocab = {chr(i): i for i in range(32, 127)} | {"[UNK]": 0}
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Split("", "isolated")
    (folder / "tokenizer.json").write_text(tokenizer.to_str())
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 1024}))
    constants = {
        "starts": np.array([21], np.int64),  # "user: my password is " is 21 characters
        "ends": np.array([30], np.int64),
        "axes": np.array([0], np.int64),
        "squeeze_axes": np.array([0], np.int64),
        "table": np.zeros((1,), np.float32),
        "powers": np.array([128**i for i in range(9)], np.int64),
    }
    nodes = [
        helper.make_node("Squeeze", ["input_ids", "squeeze_axes"], ["ids"]),
        helper.make_node("Slice", ["ids", "starts", "ends", "axes"], ["nine"]),
        helper.make_node("Mul", ["nine", "powers"], ["shifted"]),
        helper.make_node("ReduceSum", ["shifted"], ["packed"], keepdims=1),
        helper.make_node("Gather", ["table", "packed"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "leak",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "sequence"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(folder / "model.onnx"))
    return read_model(folder)


def _request(node: Node, artifact: bytes, requester: Signer) -> bytes:
    return build_request(
        signer=requester,
        task="lm-preference",
        model_name="leak",
        artifact=artifact,
        targets=[node.identity.node_id],
        purpose="a model that fails on purpose",
        filters=Filters(),
        now=node.now(),
        lifetime=3600,
        nonce=secrets.token_hex(8),
    )


def _unpacked(text: str) -> str:
    value = int(text)
    return "".join(chr((value >> (7 * i)) & 127) for i in range(9))


def test_a_failing_model_gets_no_record_text_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    artifact = _leaking_model(tmp_path / "model")
    node = make_node(tmp_path / "node")
    try:
        member, _ = make_member(node)
        for i in range(3):
            contribute(
                node, member, text=f"User: my password is {SECRET}\nAssistant: noted {i}", label="good"
            )
        process(node)
        node.change_settings({"eval_policy.min_records": 1}, actor=Actor("ada", admin=True))
        envelope = _request(node, artifact, Signer(bytes(range(32))))
        with caplog.at_level(logging.DEBUG):
            answer = node.evaluation.answer(envelope, artifact)
    finally:
        node.close()
    assert answer.decline is Decline.EVALUATOR_FAILED
    said = f"{answer.detail}\n{caplog.text}"
    assert SECRET not in said and "idx=" not in said
    for packed in re.findall(r"-?\d{10,}", said):
        assert SECRET[:4] not in _unpacked(packed)
    assert re.fullmatch(
        r"the evaluator failed in statistics \(EvaluatorFailedError from \w+\)", answer.detail or ""
    )


def test_a_failure_costs_the_requester_what_an_answer_costs_when_the_coop_adds_noise(tmp_path: Path) -> None:
    """Whether a model fails on the records is itself one bit about them."""
    from coop.node.evaluation import repository

    artifact = _leaking_model(tmp_path / "model")
    node = make_node(tmp_path / "node")
    try:
        member, _ = make_member(node)
        contribute(node, member, text=f"User: my password is {SECRET}\nAssistant: noted", label="good")
        process(node)
        admin = Actor("ada", admin=True)
        node.change_settings(
            {"eval_policy.min_records": 1, "eval_policy.noise": "laplace", "eval_policy.epsilon_milli": 400},
            actor=admin,
        )
        requester = Signer(bytes(range(32)))
        envelope = _request(node, artifact, requester)
        assert node.evaluation.answer(envelope, artifact).decline is Decline.EVALUATOR_FAILED
        spent = node.store.read(lambda c: repository.spent_budget(c, requester.public_key.hex()))
    finally:
        node.close()
    assert spent == 400
