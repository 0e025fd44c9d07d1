"""``coop highlight``: the local admin picks released records for the Atom feed and the microblog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import msgspec

from coop.node.cli.options import LOCAL_ADMIN, data_dir_argument, open_node, output_options
from coop.node.cli.output import print_json

__all__ = ["COMMANDS"]


class HighlightReport(msgspec.Struct, frozen=True):
    """``coop highlight --json``: the change, and whether the feed shows the record now."""

    uid: str
    highlighted: bool
    changed: bool
    shown: bool  # the feed (and the microblog's previews) carry it now
    reason: str | None = None  # why not, when highlighted but not shown


@click.command("highlight")
@data_dir_argument
@click.argument("uid", metavar="UID")
@click.option("--remove", is_flag=True, help="remove the record's highlight instead")
@output_options
def highlight(dir: Path, uid: str, remove: bool, as_json: bool, quiet: bool) -> int:
    """Highlight the released record UID: the Atom feed (/feed.atom) carries it, and the
    microblog's previews put it first, for as long as its preview may be shown."""
    from coop.node.channels.previews import hidden_now
    from coop.node.releases.highlights import HighlightChange, set_highlight
    from coop.node.web.atom import not_shown_because

    with open_node(dir) as node:
        now = node.now()
        hidden = hidden_now(node)

        def write(conn: Any) -> tuple[HighlightChange, str | None]:
            change = set_highlight(
                conn, uid=uid, on=not remove, actor=LOCAL_ADMIN, at=now, signer=node.signer
            )
            return change, None if remove else not_shown_because(conn, uid=uid, hidden=hidden)

        change, reason = node.store.write(write)
    report = HighlightReport(
        uid=change.uid,
        highlighted=change.highlighted,
        changed=change.changed,
        shown=not remove and reason is None,
        reason=reason,
    )
    if as_json:
        print_json(report)
    elif remove:
        print(f"removed the highlight of {uid}" if change.changed else f"{uid} was not highlighted")
    elif reason is not None:
        already = "" if change.changed else "already "
        print(f"{already}highlighted {uid}, but not shown: {reason}")
    else:
        print(
            f"highlighted {uid}: the feed carries it while its preview may be shown"
            if change.changed
            else f"{uid} was already highlighted"
        )
    return 0


COMMANDS: list[click.Command] = [highlight]
