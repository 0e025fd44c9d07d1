"""Errors raised by the evaluation package.

The tree::

    EvalError
    ├── ArtifactError            a model artifact that is malformed or unsupported (bad data)
    ├── UnknownEvaluatorError    a task no registered evaluator answers to
    ├── EvaluatorFailedError     an evaluator raised while scoring records (wraps the cause)
    └── AttestationError         a node's attestation that does not check (bad data from a node)

Each carries a ``message`` meant for people: a node puts it in the reason it
gives for declining a request.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "AttestationError",
    "EvalError",
    "EvaluatorFailedError",
    "UnknownEvaluatorError",
]


class EvalError(Exception):
    """Root of every error raised by :mod:`coop.eval`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ArtifactError(EvalError):
    """A model artifact that cannot be used: not the declared format, out of limits, or unsafe."""


class UnknownEvaluatorError(EvalError):
    """No evaluator is registered under the requested name."""

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        listed = ", ".join(known) or "none"
        super().__init__(f"no evaluator is named {name!r}; known: {listed}")
        self.name = name
        self.known = known


class EvaluatorFailedError(EvalError):
    """The evaluator raised while scoring; ``cause`` is what it raised (also ``__cause__``)."""

    def __init__(self, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class AttestationError(EvalError):
    """An attestation not signed by the node it names, for another request or model, or out of schema."""
