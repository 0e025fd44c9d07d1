"""Errors raised by the node.

The tree::

    NodeError
    ├── InputError               bad data from a client (HTTP 422, CLI exit 2)
    │   ├── MalformedError          not parseable at all: broken JSON, bad UTF-8 (400)
    │   ├── MediaTypeError          a Content-Type we do not take (415)
    │   ├── UnsupportedFormatError  not an export / text / messages we can read
    │   ├── PayloadTooLargeError    over a size or count limit (413)
    │   ├── RequestTimeoutError     a body not sent within its deadline (408)
    │   └── ConflictError           an Idempotency-Key reused for another body (409)
    ├── AuthError                missing or wrong credentials (401)
    ├── ForbiddenError           authenticated, but not allowed (403)
    ├── NotFoundError            no such thing, or not yours to see (404)
    ├── StateError               the thing exists but is in the wrong state (409)
    ├── RateLimitedError         too many requests (429, with Retry-After)
    ├── BusyError                another process holds the resource (CLI exit 3)
    └── StorageError             the data directory or database is unusable

``field`` names the offending request field where there is one.  Status codes
and CLI exit codes are mapped in one place each (``http/problems.py`` and
``cli/exits.py``), not here.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BusyError",
    "ConflictError",
    "ForbiddenError",
    "InputError",
    "MalformedError",
    "MediaTypeError",
    "NodeError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "RequestTimeoutError",
    "StateError",
    "StorageError",
    "UnsupportedFormatError",
]


class NodeError(Exception):
    """Root of every error raised by :mod:`coop.node`."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InputError(NodeError):
    """The client sent something we cannot accept."""


class MalformedError(InputError):
    """The body cannot be read at all (broken JSON, invalid UTF-8, nested too deep)."""


class MediaTypeError(InputError):
    """The request's Content-Type is not one this endpoint reads."""


class UnsupportedFormatError(InputError):
    """The content is not an Open WebUI export, plain text or structured messages."""


class PayloadTooLargeError(InputError):
    """A body, message or list is over its limit."""


class RequestTimeoutError(InputError):
    """The client did not send its whole body within the deadline (a slow drip holds a slot)."""


class ConflictError(InputError):
    """An Idempotency-Key was reused with a different body."""


class AuthError(NodeError):
    """Missing or invalid credentials."""


class ForbiddenError(NodeError):
    """Valid credentials without the right to do this."""


class NotFoundError(NodeError):
    """Nothing there, or nothing this caller may see."""


class StateError(NodeError):
    """The target exists but its state does not allow the action."""


class RateLimitedError(NodeError):
    def __init__(self, message: str, *, retry_after: int, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class BusyError(NodeError):
    """Another process holds a resource this one needs (the processor lock)."""


class StorageError(NodeError):
    """The data directory or database cannot be used."""
