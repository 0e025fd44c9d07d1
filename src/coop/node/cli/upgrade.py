"""``coop upgrade DIR [--dry-run]``: bring a data directory made by an earlier version up to date."""

from __future__ import annotations

from pathlib import Path

import click

from coop.node.cli.options import check_data_dir, data_dir_argument, open_node, output_options
from coop.node.cli.output import print_json

__all__ = ["COMMANDS"]


@click.command("upgrade")
@data_dir_argument
@click.option("--dry-run", is_flag=True, help="only say what upgrading DIR would change; write nothing")
@output_options
def upgrade(dir: Path, dry_run: bool, as_json: bool, quiet: bool) -> int:
    """Upgrade DIR in place: migrate its database, move config keys out of node.toml.

    A node does the same whenever it opens; this says what changes (one line each), and
    with --dry-run changes nothing.
    """
    from coop.node.storage.upgrade import plan_upgrade

    changes = plan_upgrade(check_data_dir(dir))
    if changes and not dry_run:
        with open_node(dir):
            pass  # opening the node upgrades it
    if as_json:
        print_json({"dir": str(dir), "dry_run": dry_run, "changes": changes})
    elif not changes:
        print(f"{dir} is up to date")
    else:
        for line in changes:
            print(line)
        print("dry run: nothing was changed" if dry_run else f"{dir} is up to date")
    return 0


COMMANDS: list[click.Command] = [upgrade]
