"""Federated evaluation: requests, evaluators, privacy guards, attestations, reports, Flower apps.

Imports governance only.  The Flower apps live in :mod:`coop.eval.flower`
(imported on demand: the core needs no Flower).
"""

from coop.eval.errors import ArtifactError, EvalError, EvaluatorFailedError, UnknownEvaluatorError
from coop.eval.evaluators import (
    Evaluator,
    LabelAgreement,
    LmPreference,
    build_label_agreement_model,
    registered,
)
from coop.eval.evaluators import get as get_evaluator
from coop.eval.privacy import DELTA, add_noise, budget_left
from coop.eval.report import (
    ATTESTATION_TYPE,
    REPORT_TYPE,
    Aggregate,
    Attestation,
    Decline,
    NodeAnswer,
    Noise,
    Report,
    ReportCheck,
    build_report,
    open_attestation,
    render_markdown,
    seal_attestation,
    verify_report,
)
from coop.eval.request import (
    REQUEST_TYPE,
    EvalRequest,
    Filters,
    RequestProblem,
    RequestRefusedError,
    VerifiedRequest,
    build_request,
    open_request,
)

__all__ = [
    "ATTESTATION_TYPE",
    "DELTA",
    "REPORT_TYPE",
    "REQUEST_TYPE",
    "Aggregate",
    "ArtifactError",
    "Attestation",
    "Decline",
    "EvalError",
    "EvalRequest",
    "Evaluator",
    "EvaluatorFailedError",
    "Filters",
    "LabelAgreement",
    "LmPreference",
    "NodeAnswer",
    "Noise",
    "Report",
    "ReportCheck",
    "RequestProblem",
    "RequestRefusedError",
    "UnknownEvaluatorError",
    "VerifiedRequest",
    "add_noise",
    "budget_left",
    "build_label_agreement_model",
    "build_report",
    "build_request",
    "get_evaluator",
    "open_attestation",
    "open_request",
    "registered",
    "render_markdown",
    "seal_attestation",
    "verify_report",
]
