"""A hostile node's answer never crashes the report: any signed payload is checked or refused.

Issue 11, item 21: whatever bytes a node signs as its attestation,
:func:`check_attestation` returns it or raises AttestationError, and a report
built around it verifies (the bad answer is a ``bad_attestation`` decline).
"""

from __future__ import annotations

import secrets
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from coop.eval import (
    ATTESTATION_TYPE,
    AttestationError,
    Decline,
    Expected,
    Filters,
    NodeAnswer,
    build_label_agreement_model,
    build_report,
    build_request,
    check_attestation,
    get_evaluator,
    open_request,
    verify_report,
)
from coop.governance import public_key
from coop.governance.envelope import seal
from coop.governance.signing import Signer

REQUESTER = bytes(range(32))
SEED = bytes([1]) * 32
NODE = public_key(SEED).hex()
NOW = 1_800_000_000
EVALUATOR = get_evaluator("label-agreement")
SCHEMA = frozenset(EVALUATOR.statistic_sensitivity())
MODEL = build_label_agreement_model([("thanks", True), ("wrong", False)] * 4, dim=256, seed=1)
REQUEST = build_request(
    signer=Signer(REQUESTER),
    task="label-agreement",
    model_name="m.npz",
    artifact=MODEL,
    targets=[NODE],
    purpose="test",
    filters=Filters(),
    now=NOW,
    lifetime=3600,
    nonce=secrets.token_hex(8),
)
VERIFIED = open_request(REQUEST, now=NOW, artifact=MODEL)
EXPECTED = Expected(
    request_hash=VERIFIED.hash,
    task="label-agreement",
    model_sha256=VERIFIED.request.model_sha256,
    targets=frozenset({NODE}),
    schema=SCHEMA,
)

ints = st.integers(min_value=-(2**70), max_value=2**70)
keys = st.sampled_from([*sorted(SCHEMA)[:5], "n", "other", ""])
values: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), ints, st.text(max_size=8), st.dictionaries(keys, ints, max_size=6)
)
# Attestation-shaped objects, each field sometimes right, sometimes wrong, sometimes missing.
payloads = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["coop-flywheel/eval-attestation/1", "x"]) | values,
        "node_id": st.sampled_from([NODE, "0" * 64]) | values,
        "request_hash": st.just(VERIFIED.hash) | values,
        "task": st.just("label-agreement") | values,
        "model_sha256": st.just(VERIFIED.request.model_sha256) | values,
        "records": ints | values,
        "statistics": st.dictionaries(keys, ints, max_size=8) | values,
        "noise": st.fixed_dictionaries(
            {},
            optional={"kind": st.sampled_from(["none", "laplace", "x"]), "epsilon_milli": ints},
        )
        | values,
        "issued_at": ints,
        "coop": st.text(max_size=8),
    },
)


@settings(max_examples=200, deadline=None)
@given(payload=payloads)
def test_any_signed_payload_is_checked_or_refused_never_a_crash(payload: dict[str, Any]) -> None:
    text = seal(msgspec.json.encode(payload), ATTESTATION_TYPE, [Signer(SEED)]).decode()
    try:
        attestation = check_attestation(text, node_id=NODE, expected=EXPECTED)
    except AttestationError:
        outcome = Decline.BAD_ATTESTATION
    else:
        assert attestation.node_id == NODE
        assert all(0 <= v < 2**53 for v in attestation.statistics.values())
        outcome = None
    report = build_report(
        request_envelope=REQUEST,
        request_hash=VERIFIED.hash,
        task="label-agreement",
        model_sha256=VERIFIED.request.model_sha256,
        purpose="test",
        answers=[NodeAnswer(node_id=NODE, attestation=text)],
        finalize=EVALUATOR.finalize,
        schema=SCHEMA,
        created_at=NOW,
        signer=Signer(REQUESTER),
    )
    check = verify_report(report, finalize=EVALUATOR.finalize, schema=SCHEMA)
    assert check, check.problems
    assert check.report is not None
    assert check.report.answers[0].decline is outcome


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_verify_report_of_any_bytes_answers_never_raises(data: bytes) -> None:
    assert not verify_report(data, finalize=EVALUATOR.finalize, schema=SCHEMA)
