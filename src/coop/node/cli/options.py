"""Options every ``coop`` command shares, declared once, and opening a data directory.

Light on purpose: click and the standard library only (plus :mod:`coop.node.errors`), so that
``coop --help`` starts fast; a command imports what it needs inside its function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click

from coop.node.cli.exits import UsageError

if TYPE_CHECKING:
    from coop.node.runtime import Node

F = TypeVar("F", bound=Callable[..., Any])
LOCAL_ADMIN: Final = "local-admin"  # the actor of commands run on the data directory itself


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
