"""The ``coop`` command line, built on click: one module per command group.

Commands on a data directory (``init``, ``serve``, ``process``, ``release``, ``member``,
``settings`` …) act on the node directly; commands with ``--node URL`` (``contribute``,
``withdraw``, ``mine``, ``correct``, ``vote``) talk to a running node over HTTP as a member, with
that member's own token (``--token-file``, ``COOP_TOKEN`` or ``coop login``).

Every error is one line on stderr (a JSON object with ``--json``) and an exit code from the one
table, :class:`coop.node.cli.exits.Exit`.  Modules here import click and the standard library
only; a command imports what it uses inside its function, so ``coop --help`` starts fast.
Shell completion: ``eval "$(_COOP_COMPLETE=bash_source coop)"`` (zsh_source, fish_source).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from coop.node.cli import (
    access,
    admin,
    evaluation,
    federation,
    governance,
    highlights,
    joint,
    member,
    node_cmds,
    peers,
    upgrade,
)
from coop.node.cli.exits import EXIT_CODES, Exit, classify, error_exit
from coop.node.cli.output import Printable

__all__ = ["EXIT_CODES", "Exit", "cli", "main"]


@click.group(
    name="coop",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
def cli() -> None:
    """Run and use a Co-op Flywheel node."""


for _module in (
    node_cmds,
    admin,
    member,
    governance,
    access,
    peers,
    federation,
    joint,
    evaluation,
    highlights,
    upgrade,
):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``coop`` entry point: returns the exit code."""
    # Everything a node writes (database, keys, releases) is private to its operator.
    os.umask(0o077)
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Printable(out), Printable(err)
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    finally:
        sys.stdout, sys.stderr = out, err


def _main(args: list[str]) -> int:
    from coop.node.errors import NodeError

    # --json anywhere before "--" asks for JSON errors too, even when parsing fails.
    as_json = "--json" in (args[: args.index("--")] if "--" in args else args)
    try:
        code = cli.main(args=args, prog_name="coop", standalone_mode=False)
        sys.stdout.flush()  # inside the try: a closed pipe (`coop payouts | head`) is caught below
        return int(code or 0)
    except BrokenPipeError:
        return _pipe_closed()
    except SystemExit:
        # click catches a closed pipe inside a command itself (EPIPE), wraps the streams and exits
        # 1; that is the reader going away, not a failure of ours.
        if type(sys.stdout).__name__ == "_PacifyFlushWrapper":
            return _pipe_closed()
        raise
    except click.exceptions.NoArgsIsHelpError as exc:  # `coop` or `coop member` alone: the help
        sys.stderr.write(exc.format_message() + "\n")
        return Exit.USAGE
    except click.UsageError as exc:
        where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else " (see coop --help)"
        return error_exit(exc.format_message() + where, Exit.USAGE, "usage", as_json=as_json)
    except click.ClickException as exc:
        return error_exit(exc.format_message(), Exit.USAGE, "usage", as_json=as_json)
    except click.Abort:
        sys.stderr.write("coop: interrupted\n")
        return Exit.INTERRUPTED
    except KeyboardInterrupt:
        sys.stderr.write("coop: interrupted\n")
        return Exit.INTERRUPTED
    except Exception as exc:
        code, kind = classify(exc)
        if code is Exit.UNEXPECTED and not isinstance(exc, NodeError):
            raise  # a bug: the traceback says where
        message = getattr(exc, "message", str(exc))
        return error_exit(message, code, kind, as_json=as_json, field=getattr(exc, "field", None))


def _pipe_closed() -> int:
    """The reader went away: say nothing more (no traceback at exit), as `cat | head` does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    return Exit.PIPE_CLOSED
