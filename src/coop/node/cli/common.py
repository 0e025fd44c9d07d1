"""What every ``coop`` command shares: options declared once, the exit codes, errors, output, progress.

Light on purpose: click and the standard library only (plus :mod:`coop.node.errors`), so that
``coop --help`` starts fast; a command imports what it needs inside its function.
"""

from __future__ import annotations

import enum
import io
import os
import re
import sys
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO, TypeVar

import click

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
    from coop.node.runtime import Node

__all__ = [
    "EXIT_CODES",
    "LOCAL_ADMIN",
    "Exit",
    "Progress",
    "UsageError",
    "data_dir_argument",
    "error_exit",
    "member_options",
    "open_node",
    "output_options",
    "print_json",
    "resolve_token",
    "when",
]

F = TypeVar("F", bound=Callable[..., Any])
LOCAL_ADMIN: Final = "local-admin"


class Exit(enum.IntEnum):
    """The exit codes of ``coop``: the one table (README "Exit codes" shows the same)."""

    OK = 0
    UNEXPECTED = 1  # a bug or an error without a better code
    # bad usage or input: unknown option, missing or mistyped DIR, URL without scheme, refused input
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


# -- output ------------------------------------------------------------------------------------

# What never reaches a terminal raw: C0 controls but newline and tab, DEL, C1 (0x9b is a CSI),
# the line and paragraph separators and the bidirectional overrides ("Trojan Source").
_UNPRINTABLE: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


class Printable(io.TextIOBase):
    """The command line's output: text a peer, a member or a proxy wrote (a peer's refusal in
    ``coop peers list``, a chat title, an error message) is shown, never obeyed by the terminal.

    Each such character is written as ``\\uXXXX``: readable, and inside ``--json`` output the
    same escape JSON itself uses, so the document still parses to the same value.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.raw_stream = stream
        self._released = False

    def write(self, text: str) -> int:
        self.raw_stream.write(_UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))
        return len(text)

    def flush(self) -> None:
        if not self._released:
            self.raw_stream.flush()

    def close(self) -> None:
        """Close this wrapper, not the stream under it: the wrapper holds no buffer of its own.

        ``IOBase.close`` (run again when the wrapper is collected) would flush the stream, which
        its owner may have closed by then (a test's captured output; the interpreter at exit):
        Python 3.13 reports that failure where 3.11 dropped it silently.
        """
        self._released = True
        super().close()

    def fileno(self) -> int:
        return self.raw_stream.fileno()

    def isatty(self) -> bool:
        return self.raw_stream.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.raw_stream.encoding


def print_json(value: object) -> None:
    import msgspec

    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n")


def when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


class Progress:
    """Progress lines on stderr, only when stderr is a terminal and neither --quiet nor --json.

    ``progress(line)`` prints a phase; ``progress.count(i, n, what)`` redraws one counter line.
    Pass ``progress.callback`` (None when silent) to long operations in other packages.
    """

    def __init__(self, *, quiet: bool = False, as_json: bool = False, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = not quiet and not as_json and self._stream.isatty()
        self._open = False  # a counter line is on screen, not ended yet

    def __call__(self, line: str) -> None:
        if self.enabled:
            self._end_counter()
            self._stream.write(f"{line}\n")
            self._stream.flush()

    def count(self, done: int, total: int, what: str) -> None:
        if self.enabled:
            # \r redraws the line: written past the escaping of Printable (our own text only).
            raw = getattr(self._stream, "raw_stream", self._stream)
            raw.write(f"\r{what} {done}/{total}")
            raw.flush()
            self._open = done < total
            if not self._open:
                raw.write("\n")

    def _end_counter(self) -> None:
        if self._open:
            getattr(self._stream, "raw_stream", self._stream).write("\n")
            self._open = False

    @property
    def callback(self) -> Callable[[str], None] | None:
        return self if self.enabled else None


# -- shared options ---------------------------------------------------------------------------


def output_options(fn: F) -> F:
    """``--json`` and ``--quiet``, on every command."""
    fn = click.option(
        "--quiet", "-q", is_flag=True, help="print no progress on stderr (it shows only on a terminal)"
    )(fn)
    return click.option(
        "--json", "as_json", is_flag=True, help="print machine-readable JSON (errors too, on stderr)"
    )(fn)


def member_options(fn: F) -> F:
    """``--node``, ``--token`` and ``--token-file``: a member's call to a running node."""
    fn = click.option(
        "--token-file",
        metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help="read your member token from FILE (first line)",
    )(fn)
    fn = click.option(
        "--token",
        metavar="TOKEN",
        help="your member token (visible to other users in the process list: prefer --token-file, "
        "COOP_TOKEN or coop login)",
    )(fn)
    return click.option(
        "--node", "node_url", required=True, metavar="URL", help="the node's URL, e.g. http://127.0.0.1:8000"
    )(fn)


def data_dir_argument(fn: F) -> F:
    """The node's data directory (``coop init DIR`` made it)."""
    return click.argument("dir", metavar="DIR", type=click.Path(path_type=Path))(fn)


def check_data_dir(root: Path) -> Path:
    """A usage error, not a storage error, when DIR is missing or no node's data directory."""
    if not root.is_dir():
        raise UsageError(f"{root} does not exist: name a node's data directory", field="DIR")
    if not (root / "node.toml").exists():
        raise UsageError(f"{root} is not a data directory (run `coop init {root}` first)", field="DIR")
    return root


@contextmanager
def open_node(root: Path) -> Iterator[Node]:
    """The node of a data directory, closed afterwards."""
    from coop.node.runtime import Node

    node = Node(check_data_dir(root))
    try:
        yield node
    finally:
        node.close()


# -- member tokens -----------------------------------------------------------------------------


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "coop"


def credentials_path() -> Path:
    return config_dir() / "credentials.toml"


def stored_tokens() -> dict[str, str]:
    """Node URL -> token, as ``coop login`` stored them."""
    path = credentials_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", field="credentials") from None
    nodes = data.get("nodes", {})
    return {
        url: entry["token"]
        for url, entry in nodes.items()
        if isinstance(entry, dict) and isinstance(entry.get("token"), str)
    }


def store_token(url: str, token: str) -> Path:
    """Keep ``token`` for ``url`` in the user's config directory (mode 0600)."""
    import tomli_w

    tokens = stored_tokens()
    tokens[url] = token
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = tomli_w.dumps({"nodes": {u: {"token": t} for u, t in sorted(tokens.items())}})
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def read_token_file(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the token file {path}: {exc}", field="--token-file") from None
    token = lines[0].strip() if lines else ""
    if not token:
        raise UsageError(f"the token file {path} is empty", field="--token-file")
    return token


def resolve_token(url: str, token: str | None, token_file: Path | None) -> str:
    """--token, then --token-file, then COOP_TOKEN, then the token ``coop login`` stored for URL."""
    if token:
        return token
    if token_file is not None:
        return read_token_file(token_file)
    env = os.environ.get("COOP_TOKEN", "").strip()
    if env:
        return env
    stored = stored_tokens().get(url.rstrip("/"))
    if stored:
        return stored
    raise UsageError(
        f"no member token for {url}: pass --token-file FILE, set COOP_TOKEN, or run coop login {url}",
        field="--token",
    )


def member_client(
    node_url: str, token: str | None, token_file: Path | None, *, progress: Progress | None = None
) -> Any:
    """A :class:`coop.node.client.NodeClient` for a member command (URL checked, token resolved)."""
    from coop.node.client import NodeClient, check_node_url

    try:
        url = check_node_url(node_url)
    except InputError as exc:
        raise UsageError(exc.message, field="--node") from None

    def waiting(delay: float, why: str) -> None:
        if progress is not None:
            progress(f"the node asks to wait {delay:g} s ({why}); waiting")

    return NodeClient(url, resolve_token(url, token, token_file), on_wait=waiting)
