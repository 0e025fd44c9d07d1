"""Errors raised by the governance core.

The tree::

    GovernanceError
    ├── InvalidValueError        a value does not fit the vocabulary (bad data)
    │   └── AiPrefSyntaxError     an AI-use preference that is not a valid dictionary
    └── PolicyError              a valid request that the co-op's rules refuse

Every error names the ``field`` it is about, so that the HTTP layer can say
which part of a request was wrong without parsing messages.
"""

from __future__ import annotations

__all__ = ["AiPrefSyntaxError", "GovernanceError", "InvalidValueError", "PolicyError"]


class GovernanceError(Exception):
    """Root of every error raised by :mod:`coop.governance`."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidValueError(GovernanceError):
    """A value is outside the vocabulary (unknown licence, scope, label...)."""


class AiPrefSyntaxError(InvalidValueError):
    """An AI-use preference that does not parse as an RFC 9651 dictionary."""

    def __init__(self, message: str, *, field: str | None = None, position: int = 0) -> None:
        super().__init__(message, field=field)
        self.position = position


class PolicyError(GovernanceError):
    """A well-formed request that the co-op's rules do not allow."""
