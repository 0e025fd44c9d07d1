"""The exit codes of ``coop`` (one table, mirrored in the README) and how an error becomes one.

Light on purpose: click and the standard library only (plus :mod:`coop.node.errors`), so that
``coop --help`` starts fast; a command imports what it needs inside its function.
"""

from __future__ import annotations

import enum
import sys
from typing import TYPE_CHECKING, Final

from coop.node.errors import (
    AuthError,
    BusyError,
    ForbiddenError,
    InputError,
    NodeError,
    NotFoundError,
    RateLimitedError,
    StateError,
    StorageError,
)

if TYPE_CHECKING:
    pass


class Exit(enum.IntEnum):
    """The exit codes of ``coop``: the one table (README "Exit codes" shows the same)."""

    OK = 0
    UNEXPECTED = 1  # a bug or an error without a better code
    # bad usage or input: unknown option, missing or mistyped DIR, URL without scheme, refused input,
    # a publish channel's refusal (a missing setting or password, a refused login, a service not reached)
    USAGE = 2
    BUSY = 3  # another process holds the resource, or the node's rate limit outlasted the wait
    NOT_FOUND = 4  # no such thing, the wrong state for it, or refused by the co-op's policy
    AUTH = 5  # missing or wrong token, or not allowed
    UNREACHABLE = 6  # the node at --node did not answer (one connect attempt), or answered 5xx
    STORAGE = 7  # the data directory or database is unusable
    PARTIAL = 8  # a bulk contribution where some chats were refused (the summary says which)
    VERIFY_FAILED = 9  # `audit verify`, `eval verify` or `eval request`: a chain or report does not verify
    INTERRUPTED = 130  # Ctrl-C
    PIPE_CLOSED = 141  # the reader of stdout went away (`coop ... | head`)


class UsageError(NodeError):
    """The command was used wrongly (a missing data directory, a URL without scheme): exit 2."""


# Error class -> (exit code, kind in --json errors); the first match wins (subclasses first).
EXIT_CODES: Final[list[tuple[type[Exception], Exit, str]]] = [
    (UsageError, Exit.USAGE, "usage"),
    (InputError, Exit.USAGE, "input"),
    (RateLimitedError, Exit.BUSY, "rate-limited"),
    (BusyError, Exit.BUSY, "busy"),
    (NotFoundError, Exit.NOT_FOUND, "not-found"),
    (StateError, Exit.NOT_FOUND, "state"),
    (AuthError, Exit.AUTH, "auth"),
    (ForbiddenError, Exit.AUTH, "forbidden"),
    (StorageError, Exit.STORAGE, "storage"),
]


def classify(exc: BaseException) -> tuple[Exit, str]:
    """The exit code and kind of an error raised by a command."""
    # Governance is imported only by commands that use it: no GovernanceError without it.
    governance = sys.modules.get("coop.governance.errors")
    if governance is not None and isinstance(exc, governance.PolicyError):
        return Exit.NOT_FOUND, "policy"
    if governance is not None and isinstance(exc, governance.GovernanceError):
        return Exit.USAGE, "input"
    client = sys.modules.get("coop.node.client")
    if client is not None and isinstance(exc, client.UnreachableError | client.RemoteError):
        return Exit.UNREACHABLE, "unreachable" if isinstance(exc, client.UnreachableError) else "remote"
    # A publish channel's refusal names the setting to fix (a target, a password, a service the
    # machine cannot reach): the input was refused, not a bug.
    channels = sys.modules.get("coop.node.channels.base")
    if channels is not None and isinstance(exc, channels.ChannelError):
        return Exit.USAGE, "channel"
    for kind, code, name in EXIT_CODES:
        if isinstance(exc, kind):
            return code, name
    return Exit.UNEXPECTED, "error"


def error_exit(message: str, code: Exit, kind: str, *, as_json: bool, field: str | None = None) -> int:
    """Write one error (a line, or a JSON object with --json) on stderr; returns the exit code."""
    if as_json:
        import json

        sys.stderr.write(
            json.dumps({"error": message, "code": int(code), "kind": kind, "field": field}) + "\n"
        )
    else:
        shown = f" [{field}]" if field and field not in message else ""
        sys.stderr.write(f"coop: error: {message}{shown}\n")
    return int(code)
