"""What comes back: each node's signed attestation, and the signed report that combines them.

A node that answers signs an **attestation**: its id, the request's hash, the
model's hash, how many records it used, the integer statistics the
evaluator produced (after any noise the co-op requires) and the noise it
applied.  The **report** names every targeted node's participation or its
reason for declining, sums the attested statistics, computes the metrics
from the sums and is signed by the key that ran the evaluation.
:func:`build_report` checks every attestation before summing it (signature by
the key of a co-op the request names, request, task, model, statistics
schema); one that fails is reported as a ``bad_attestation`` decline.
:func:`verify_report` runs the same checks and recomputes the aggregate with
the same :func:`tally`, so a report cannot claim numbers its nodes did not sign.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Final

import msgspec

from coop.eval.errors import AttestationError
from coop.eval.request import REQUEST_TYPE, EvalRequest
from coop.governance import GovernanceError, NoiseKind, canonical_bytes, sha256_hex
from coop.governance.envelope import Envelope, open_envelope, seal, valid_signers
from coop.governance.signing import Signer

__all__ = [
    "ATTESTATION_TYPE",
    "REPORT_TYPE",
    "Aggregate",
    "Attestation",
    "Decline",
    "Expected",
    "NodeAnswer",
    "Noise",
    "Report",
    "ReportCheck",
    "Tally",
    "build_report",
    "check_attestation",
    "open_attestation",
    "render_markdown",
    "seal_attestation",
    "tally",
    "verify_report",
]

ATTESTATION_TYPE: Final = "application/vnd.coop-flywheel.eval-attestation+json"
REPORT_TYPE: Final = "application/vnd.coop-flywheel.eval-report+json"
_MAX: Final = 16 * 1024 * 1024
_KIND: Final = "coop-flywheel/eval-attestation/1"


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
    BAD_ATTESTATION = "bad_attestation"  # an answer the report refused to sum (the detail says why)
    MODEL_TOO_LARGE = "model_too_large"  # the artifact is over the co-op's eval.max_model_mb
    LIMIT_EXCEEDED = "limit_exceeded"  # the evaluation ran out of time or memory (the detail says which)


class Noise(msgspec.Struct, frozen=True):
    kind: str = "none"  # none | laplace | gaussian
    epsilon_milli: int = 0


class Attestation(msgspec.Struct, frozen=True, kw_only=True):
    type: str = _KIND
    node_id: str
    request_hash: str
    task: str
    model_sha256: str
    records: int
    statistics: dict[str, int]
    noise: Noise
    issued_at: int
    coop: str = ""  # the co-op's name, for people reading the report
    # What the co-op lets others publish of these numbers: none | aggregate | named (the
    # co-op's eval_policy.publication when it signed); an attestation without it counts as none.
    publication: str = "none"


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


class Expected(msgspec.Struct, frozen=True, kw_only=True):
    """What every attestation of one run must name: the request, its task and model, its co-ops.

    ``targets`` are the node ids the signed request names; a node id *is* the
    node's Ed25519 public key, so the requester's own signature pins the keys
    attestations are checked against.  ``schema`` is the evaluator's statistic
    keys (None when the verifier does not know the task).
    """

    request_hash: str
    task: str
    model_sha256: str
    targets: frozenset[str]
    schema: frozenset[str] | None = None


class Tally(msgspec.Struct, frozen=True):
    """What a report derives from its checked attestations (built and re-derived by :func:`tally`)."""

    aggregate: Aggregate
    per_node: dict[str, dict[str, str]]
    noise: dict[str, Noise]


_ATTESTATION: Final = msgspec.json.Decoder(Attestation)
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_LIMIT: Final = 2**53  # canonical payloads carry integers below 2^53
_NOISE_KINDS: Final = frozenset(kind.value for kind in NoiseKind)


def seal_attestation(attestation: Attestation, signer: Signer) -> bytes:
    return seal(canonical_bytes(attestation), ATTESTATION_TYPE, [signer])


def _signed_by(envelope: Envelope, payload: bytes, key_hex: str) -> bool:
    if not _HEX64.fullmatch(key_hex):
        return False
    return key_hex in valid_signers(envelope, payload, {key_hex: bytes.fromhex(key_hex)})


def open_attestation(data: bytes) -> tuple[Attestation, bool]:
    """The attestation and whether the key it names signed exactly these bytes (no other check)."""
    envelope, payload = open_envelope(data, payload_type=ATTESTATION_TYPE, max_bytes=_MAX)
    attestation = _ATTESTATION.decode(payload)
    return attestation, _signed_by(envelope, payload, attestation.node_id)


def check_attestation(text: str, *, node_id: str, expected: Expected) -> Attestation:
    """The attestation ``node_id`` sent, once every check passes; AttestationError says which failed.

    The signature is checked first, over the exact bytes, with the key of the
    co-op that answered (a node id the request names), then the content: that
    co-op, this request, task and model, and integer statistics of the task's
    schema (non-negative, below 2^53).
    """
    if node_id not in expected.targets:
        raise AttestationError("an answer from a co-op the request does not name")
    try:
        envelope, payload = open_envelope(text.encode(), payload_type=ATTESTATION_TYPE, max_bytes=_MAX)
    except (GovernanceError, UnicodeEncodeError) as exc:
        raise AttestationError(f"unreadable attestation: {exc}") from None
    if not _signed_by(envelope, payload, node_id):
        raise AttestationError("the attestation is not signed by the co-op's key")
    try:
        attestation = _ATTESTATION.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise AttestationError(f"not an attestation: {exc}") from None
    if attestation.type != _KIND:
        raise AttestationError(f"not an attestation this report understands ({attestation.type[:60]!r})")
    if attestation.node_id != node_id:
        raise AttestationError("the attestation names another co-op")
    if attestation.request_hash != expected.request_hash:
        raise AttestationError("the attestation is for another request")
    if attestation.task != expected.task:
        raise AttestationError("the attestation is for another task")
    if attestation.model_sha256 != expected.model_sha256:
        raise AttestationError("the attestation names another model")
    _check_numbers(attestation, expected.schema)
    return attestation


def _check_numbers(attestation: Attestation, schema: frozenset[str] | None) -> None:
    stats = attestation.statistics
    if not 0 <= attestation.records < _LIMIT:
        raise AttestationError("the record count is out of range")
    bad = sorted(k for k, v in stats.items() if not 0 <= v < _LIMIT)
    if bad:
        raise AttestationError(f"statistic {bad[0][:40]!r} is out of range (0 to 2^53)")
    if schema is not None and stats.keys() != schema:
        extra = sorted(stats.keys() - schema)
        missing = sorted(schema - stats.keys())
        named = f"unknown {extra[0][:40]!r}" if extra else f"missing {missing[0]!r}"
        raise AttestationError(f"the statistics do not follow the task's schema ({named})")
    if "n" in stats and stats["n"] != attestation.records:
        raise AttestationError("the record count is not the attested statistic n")
    noise = attestation.noise
    if noise.kind not in _NOISE_KINDS or not 0 <= noise.epsilon_milli < _LIMIT:
        raise AttestationError("the noise is not one a co-op applies")
    if (noise.kind == NoiseKind.NONE.value) != (noise.epsilon_milli == 0):
        raise AttestationError("the noise and its epsilon disagree")


def _decimal(value: float) -> str:
    return f"{value:.6f}"


def tally(
    attestations: Sequence[Attestation], finalize: Callable[[Mapping[str, int]], dict[str, float]] | None
) -> Tally:
    """Sum checked attestations and compute the metrics: building and verifying a report both call this.

    Without ``finalize`` (a verifier that does not know the task) the metrics are left empty.
    """
    totals: dict[str, int] = {}
    per_node: dict[str, dict[str, str]] = {}
    noise: dict[str, Noise] = {}
    records = 0
    for attestation in attestations:
        records += attestation.records
        noise[attestation.node_id] = attestation.noise
        for key, value in attestation.statistics.items():
            totals[key] = totals.get(key, 0) + value
        if finalize is not None:
            per_node[attestation.node_id] = {
                k: _decimal(v) for k, v in finalize(attestation.statistics).items()
            }
    metrics = {k: _decimal(v) for k, v in finalize(totals).items()} if finalize and attestations else {}
    aggregate = Aggregate(
        nodes=len(attestations), records=records, statistics=dict(sorted(totals.items())), metrics=metrics
    )
    return Tally(aggregate=aggregate, per_node=per_node, noise=noise)


def _request_of(envelope_text: str) -> tuple[EvalRequest, str] | None:
    """The request inside a report or job and its hash, if the requester's key signed it."""
    try:
        envelope, payload = open_envelope(envelope_text.encode(), payload_type=REQUEST_TYPE, max_bytes=_MAX)
        request = msgspec.json.decode(payload, type=EvalRequest)
    except (GovernanceError, msgspec.DecodeError, UnicodeError, RecursionError):
        return None
    if not _signed_by(envelope, payload, request.requester):
        return None
    return request, sha256_hex(payload)


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
    signer: Signer,
    schema: Collection[str] | None = None,
) -> bytes:
    """Check every attestation, sum the good ones, compute the metrics, and sign the whole report.

    An attestation that does not check becomes a ``bad_attestation`` decline
    naming the reason: one bad node never ends the run.  The request must be
    the (verified) one the run answered; its targets pin the nodes' keys.
    """
    opened = _request_of(request_envelope.decode())
    if opened is None or opened[1] != request_hash:
        raise AttestationError("the report's request is not the signed request it names")
    expected = Expected(
        request_hash=request_hash,
        task=task,
        model_sha256=model_sha256,
        targets=frozenset(opened[0].targets),
        schema=frozenset(schema) if schema is not None else None,
    )
    kept: dict[str, NodeAnswer] = {}
    attested: list[Attestation] = []
    for answer in answers:
        if answer.node_id in kept or answer.node_id not in expected.targets:
            continue  # one answer per co-op the request names: another is never summed
        if answer.attestation is None:
            kept[answer.node_id] = answer
            continue
        try:
            if answer.decline is not None:
                raise AttestationError("the answer both attests and declines")
            attestation = check_attestation(answer.attestation, node_id=answer.node_id, expected=expected)
        except AttestationError as exc:
            kept[answer.node_id] = NodeAnswer(
                node_id=answer.node_id, decline=Decline.BAD_ATTESTATION, detail=exc.message, coop=answer.coop
            )
            continue
        kept[answer.node_id] = answer
        attested.append(attestation)
    result = tally(attested, finalize)
    report = Report(
        request=request_envelope.decode(),
        request_hash=request_hash,
        task=task,
        model_sha256=model_sha256,
        purpose=purpose,
        answers=tuple(sorted(kept.values(), key=lambda a: a.node_id)),
        per_node=result.per_node,
        aggregate=result.aggregate,
        noise=result.noise,
        created_at=created_at,
        signer=signer.public_key.hex(),
    )
    return seal(canonical_bytes(report), REPORT_TYPE, [signer])


def verify_report(
    data: bytes,
    *,
    finalize: Callable[[Mapping[str, int]], dict[str, float]] | None = None,
    schema: Collection[str] | None = None,
    trusted_nodes: frozenset[str] | None = None,
) -> ReportCheck:
    """Check the report's signature, the request's, every attestation as :func:`build_report` does,
    and that the aggregate is what :func:`tally` makes of them."""
    problems: list[str] = []
    try:
        envelope, payload = open_envelope(data, payload_type=REPORT_TYPE, max_bytes=_MAX)
        report = msgspec.json.decode(payload, type=Report)
    except (GovernanceError, msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        return ReportCheck(problems=(f"not a report: {exc}",))
    if not _signed_by(envelope, payload, report.signer):
        problems.append("the report's own signature does not verify")
    opened = _request_of(report.request)
    if opened is None or opened[1] != report.request_hash:
        problems.append("the request in the report is not signed or does not match its hash")
        targets: frozenset[str] = frozenset()
    else:
        request, _ = opened
        targets = frozenset(request.targets)
        if (request.task, request.model_sha256) != (report.task, report.model_sha256):
            problems.append("the report names another task or model than its request")
    expected = Expected(
        request_hash=report.request_hash,
        task=report.task,
        model_sha256=report.model_sha256,
        targets=targets,
        schema=frozenset(schema) if schema is not None else None,
    )
    seen: set[str] = set()
    attested: list[Attestation] = []
    for answer in report.answers:
        who = f"node {answer.node_id[:12]}"
        if answer.node_id in seen:
            problems.append(f"{who} appears twice")
            continue
        seen.add(answer.node_id)
        if answer.node_id not in targets:
            problems.append(f"{who} is not a co-op the request names")
            continue
        if answer.attestation is None:
            if answer.decline is None:
                problems.append(f"{who} neither answered nor declined")
            continue
        try:
            if answer.decline is not None:
                raise AttestationError("the answer both attests and declines")
            attestation = check_attestation(answer.attestation, node_id=answer.node_id, expected=expected)
        except AttestationError as exc:
            problems.append(f"{who}: {exc.message}")
            continue
        if trusted_nodes is not None and attestation.node_id not in trusted_nodes:
            problems.append(f"{who} is not one of the co-ops you trust")
        attested.append(attestation)
    for missing in sorted(targets - seen):
        problems.append(f"node {missing[:12]} is named in the request but missing from the report")
    result = tally(attested, finalize)
    claimed = report.aggregate
    if (claimed.nodes, claimed.records, claimed.statistics) != (
        result.aggregate.nodes,
        result.aggregate.records,
        result.aggregate.statistics,
    ) or report.noise != result.noise:
        problems.append("the aggregate is not the sum of the attested statistics")
    if finalize is not None and (
        claimed.metrics != result.aggregate.metrics or report.per_node != result.per_node
    ):
        problems.append("the metrics do not follow from the attested statistics")
    return ReportCheck(problems=tuple(problems), report=report)


def peek_attestation(answer: NodeAnswer) -> Attestation | None:
    """The attestation's content for display (a report that does not verify still renders)."""
    if answer.attestation is None:
        return None
    try:
        return open_attestation(answer.attestation.encode())[0]
    except (GovernanceError, msgspec.DecodeError, UnicodeError, RecursionError):
        return None


def _coop_name(answer: NodeAnswer) -> str:
    attestation = peek_attestation(answer)
    return attestation.coop if attestation is not None else answer.coop


def _cell(text: str) -> str:
    """Text a node chose (its name, its reason), made one table cell: no row breaks, no new columns."""
    flat = "".join(" " if ch.isspace() or not ch.isprintable() else ch for ch in text[:300])
    return flat.replace("\\", "\\\\").replace("|", "\\|")


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
    labels = {
        a.node_id: _cell(names.get(a.node_id) or _coop_name(a) or a.node_id[:16]) for a in report.answers
    }
    for answer in report.answers:
        label = labels[answer.node_id]
        noise = report.noise.get(answer.node_id)
        noise_text = (
            "-"
            if noise is None or noise.kind == "none"
            else f"{noise.kind}, epsilon {noise.epsilon_milli / 1000:g}"
        )
        if answer.attestation is not None:
            attestation = peek_attestation(answer)
            records = "?" if attestation is None else str(attestation.records)
            lines.append(f"| {label} | yes | {records} | | {noise_text} |")
        else:
            reason = answer.decline.value if answer.decline else "?"
            detail = f" ({_cell(answer.detail)})" if answer.detail else ""
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
        f"{report.aggregate.records} records from {report.aggregate.nodes}"
        f" co-op{'' if report.aggregate.nodes == 1 else 's'}. Only these numbers left",
        "the co-ops: each node ran the evaluation inside itself and signed what it sent.",
        "",
    ]
    return "\n".join(lines)
