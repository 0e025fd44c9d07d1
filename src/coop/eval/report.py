"""What comes back: each node's signed attestation, and the signed report that combines them.

A node that answers signs an **attestation**: its id, the request's hash, the
model's hash, how many records it used, the integer statistics the
evaluator produced (after any noise the co-op requires) and the noise it
applied.  The **report** names every targeted node's participation or its
reason for declining, sums the attested statistics, computes the metrics
from the sums and is signed by the key that ran the evaluation.
:func:`verify_report` checks every signature and recomputes the aggregate,
so a report cannot claim numbers its nodes did not sign.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import msgspec

from coop.eval.request import REQUEST_TYPE
from coop.governance import GovernanceError, canonical_bytes, public_key, sha256_hex
from coop.governance.envelope import open_envelope, seal, valid_signers

__all__ = [
    "ATTESTATION_TYPE",
    "REPORT_TYPE",
    "Aggregate",
    "Attestation",
    "Decline",
    "NodeAnswer",
    "Noise",
    "Report",
    "ReportCheck",
    "build_report",
    "open_attestation",
    "render_markdown",
    "seal_attestation",
    "verify_report",
]

ATTESTATION_TYPE: Final = "application/vnd.coop-flywheel.eval-attestation+json"
REPORT_TYPE: Final = "application/vnd.coop-flywheel.eval-report+json"
_MAX: Final = 16 * 1024 * 1024


class Decline(enum.StrEnum):
    """Why a node did not answer (each said plainly in the report)."""

    QUALITY_FREEZE = "quality_freeze"
    EMBARGO = "embargo"
    NOT_ALLOWED = "requester_not_allowed"
    AWAITING_APPROVAL = "awaiting_admin_approval"
    TOO_FEW_RECORDS = "too_few_records"
    BUDGET_SPENT = "privacy_budget_spent"
    BAD_REQUEST = "bad_request"
    UNKNOWN_TASK = "unknown_task"
    MODEL_HASH_MISMATCH = "model_hash_mismatch"
    MALFORMED_ARTIFACT = "malformed_artifact"
    EVALUATOR_FAILED = "evaluator_failed"
    NOT_TARGETED = "not_targeted"
    UNREACHABLE = "no_answer"


class Noise(msgspec.Struct, frozen=True):
    kind: str = "none"  # none | laplace | gaussian
    epsilon_milli: int = 0


class Attestation(msgspec.Struct, frozen=True, kw_only=True):
    type: str = "coop-flywheel/eval-attestation/1"
    node_id: str
    request_hash: str
    task: str
    model_sha256: str
    records: int
    statistics: dict[str, int]
    noise: Noise
    issued_at: int
    coop: str = ""  # the co-op's name, for people reading the report


class NodeAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """One node's reply: an attestation envelope, or a decline with its reason."""

    node_id: str
    attestation: str | None = None  # the DSSE envelope as text, exactly as the node signed it
    decline: Decline | None = None
    detail: str | None = None
    coop: str = ""


class Aggregate(msgspec.Struct, frozen=True):
    nodes: int
    records: int
    statistics: dict[str, int]
    metrics: dict[str, str]  # decimal text: canonical bytes carry no floats


class Report(msgspec.Struct, frozen=True, kw_only=True):
    type: str = "coop-flywheel/eval-report/1"
    request: str  # the request envelope as text
    request_hash: str
    task: str
    model_sha256: str
    purpose: str
    answers: tuple[NodeAnswer, ...]
    per_node: dict[str, dict[str, str]]  # node id -> its metrics (decimal text)
    aggregate: Aggregate
    noise: dict[str, Noise]
    created_at: int
    signer: str


class ReportCheck(msgspec.Struct, frozen=True):
    """Truthy when every signature checks and the aggregate is the sum of the attestations."""

    problems: tuple[str, ...] = ()
    report: Report | None = None

    def __bool__(self) -> bool:
        return not self.problems


def seal_attestation(attestation: Attestation, seed: bytes) -> bytes:
    return seal(canonical_bytes(attestation), ATTESTATION_TYPE, [seed])


def open_attestation(data: bytes) -> tuple[Attestation, bool]:
    """The attestation and whether its node's key signed exactly these bytes."""
    envelope, payload = open_envelope(data, payload_type=ATTESTATION_TYPE, max_bytes=_MAX)
    attestation = msgspec.json.decode(payload, type=Attestation)
    key = attestation.node_id
    ok = key in valid_signers(envelope, payload, {key: bytes.fromhex(key)})
    return attestation, ok


def _decimal(value: float) -> str:
    return f"{value:.6f}"


def build_report(
    *,
    request_envelope: bytes,
    request_hash: str,
    task: str,
    model_sha256: str,
    purpose: str,
    answers: Sequence[NodeAnswer],
    finalize: Callable[[Mapping[str, int]], dict[str, float]],
    created_at: int,
    seed: bytes,
) -> bytes:
    """Sum the attested statistics, compute the metrics, and sign the whole report."""
    totals: dict[str, int] = {}
    per_node: dict[str, dict[str, str]] = {}
    noise: dict[str, Noise] = {}
    records = nodes = 0
    for answer in answers:
        if answer.attestation is None:
            continue
        attestation, _ = open_attestation(answer.attestation.encode())
        nodes += 1
        records += attestation.records
        noise[answer.node_id] = attestation.noise
        for key, value in attestation.statistics.items():
            totals[key] = totals.get(key, 0) + value
        per_node[answer.node_id] = {k: _decimal(v) for k, v in finalize(attestation.statistics).items()}
    metrics = {k: _decimal(v) for k, v in finalize(totals).items()} if nodes else {}
    report = Report(
        request=request_envelope.decode(),
        request_hash=request_hash,
        task=task,
        model_sha256=model_sha256,
        purpose=purpose,
        answers=tuple(sorted(answers, key=lambda a: a.node_id)),
        per_node=per_node,
        aggregate=Aggregate(
            nodes=nodes, records=records, statistics=dict(sorted(totals.items())), metrics=metrics
        ),
        noise=noise,
        created_at=created_at,
        signer=public_key(seed).hex(),
    )
    return seal(canonical_bytes(report), REPORT_TYPE, [seed])


def verify_report(
    data: bytes,
    *,
    finalize: Callable[[Mapping[str, int]], dict[str, float]] | None = None,
    trusted_nodes: frozenset[str] | None = None,
) -> ReportCheck:
    """Check the report's signature, every attestation's, and that the sums add up."""
    problems: list[str] = []
    try:
        envelope, payload = open_envelope(data, payload_type=REPORT_TYPE, max_bytes=_MAX)
        report = msgspec.json.decode(payload, type=Report)
    except (GovernanceError, msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        return ReportCheck(problems=(f"not a report: {exc}",))
    if report.signer not in valid_signers(envelope, payload, {report.signer: bytes.fromhex(report.signer)}):
        problems.append("the report's own signature does not verify")
    totals: dict[str, int] = {}
    records = 0
    for answer in report.answers:
        if answer.attestation is None:
            if answer.decline is None:
                problems.append(f"node {answer.node_id[:12]} neither answered nor declined")
            continue
        try:
            attestation, ok = open_attestation(answer.attestation.encode())
        except (GovernanceError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            problems.append(f"node {answer.node_id[:12]}: unreadable attestation ({exc})")
            continue
        if not ok:
            problems.append(f"node {answer.node_id[:12]}: attestation not signed by that node")
        if attestation.node_id != answer.node_id or attestation.request_hash != report.request_hash:
            problems.append(f"node {answer.node_id[:12]}: attestation is for another node or request")
        if attestation.model_sha256 != report.model_sha256:
            problems.append(f"node {answer.node_id[:12]}: attestation names another model")
        if trusted_nodes is not None and attestation.node_id not in trusted_nodes:
            problems.append(f"node {answer.node_id[:12]} is not one of the co-ops you trust")
        records += attestation.records
        for key, value in attestation.statistics.items():
            totals[key] = totals.get(key, 0) + value
    if records != report.aggregate.records or dict(sorted(totals.items())) != report.aggregate.statistics:
        problems.append("the aggregate is not the sum of the attested statistics")
    if finalize is not None and totals:
        expected = {k: _decimal(v) for k, v in finalize(totals).items()}
        if expected != report.aggregate.metrics:
            problems.append("the aggregate metrics do not follow from the attested statistics")
    if sha256_hex(_request_payload(report.request)) != report.request_hash:
        problems.append("the request in the report does not match its hash")
    return ReportCheck(problems=tuple(problems), report=report)


def _request_payload(envelope_text: str) -> bytes:
    try:
        _, payload = open_envelope(envelope_text.encode(), payload_type=REQUEST_TYPE, max_bytes=_MAX)
    except GovernanceError:
        return b""
    return payload


def _coop_name(answer: NodeAnswer) -> str:
    if answer.attestation is not None:
        return open_attestation(answer.attestation.encode())[0].coop
    return answer.coop


def render_markdown(report: Report, names: Mapping[str, str] | None = None) -> str:
    """The report for people: what was asked, who answered, the numbers."""
    names = names or {}
    lines = [
        f"# Federated evaluation: {report.task}",
        "",
        f"- model sha256: `{report.model_sha256}`",
        f"- purpose: {report.purpose}",
        f"- request: `{report.request_hash}`",
        f"- signed by: `{report.signer}`",
        "",
        "## Participation",
        "",
        "| co-op | answered | records | reason if declined | noise |",
        "| --- | --- | --- | --- | --- |",
    ]
    labels = {a.node_id: names.get(a.node_id) or _coop_name(a) or a.node_id[:16] for a in report.answers}
    for answer in report.answers:
        label = labels[answer.node_id]
        noise = report.noise.get(answer.node_id)
        noise_text = (
            "-"
            if noise is None or noise.kind == "none"
            else f"{noise.kind}, epsilon {noise.epsilon_milli / 1000:g}"
        )
        if answer.attestation is not None:
            records = open_attestation(answer.attestation.encode())[0].records
            lines.append(f"| {label} | yes | {records} | | {noise_text} |")
        else:
            reason = answer.decline.value if answer.decline else "?"
            detail = f" ({answer.detail})" if answer.detail else ""
            lines.append(f"| {label} | no | | {reason}{detail} | |")
    lines += [
        "",
        "## Metrics",
        "",
        "| metric | aggregate | " + " | ".join(labels.get(n, n[:8]) for n in report.per_node) + " |",
    ]
    lines.append("| --- | --- | " + " | ".join("---" for _ in report.per_node) + " |")
    for metric, value in report.aggregate.metrics.items():
        row = [report.per_node[n].get(metric, "") for n in report.per_node]
        lines.append(f"| {metric} | {value} | " + " | ".join(row) + " |")
    lines += [
        "",
        f"{report.aggregate.records} records from {report.aggregate.nodes} co-ops. Only these numbers left",
        "the co-ops: each node ran the evaluation inside itself and signed what it sent.",
        "",
    ]
    return "\n".join(lines)
