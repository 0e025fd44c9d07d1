"""``coop federation``: the federation roster -- found one, join one, propose and sign changes.

A roster lists the member co-ops and changes only by k-of-n of their signatures (and the
signature of every key a change adds); each change is a pending proposal until it has them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from coop.node.cli.options import LOCAL_ADMIN, data_dir_argument, open_node, output_options
from coop.node.cli.output import print_json, when

__all__ = ["COMMANDS"]


@click.group("federation")
def federation() -> None:
    """The federation roster: create, join, propose, sign, show, export."""


@federation.command("create")
@data_dir_argument
@click.option("--name", required=True, help="the federation's name")
@click.option(
    "--threshold", type=click.IntRange(1), default=1, show_default=True, help="signatures a change needs"
)
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True, help="until it expires")
@output_options
def create(dir: Path, name: str, threshold: int, days: int, as_json: bool, quiet: bool) -> int:
    """Found a federation: roster version 1 lists this co-op alone."""
    with open_node(dir) as node:
        trusted = node.federation.roster.create(
            name, threshold=threshold, lifetime_days=days, actor=LOCAL_ADMIN
        )
    if as_json:
        print_json({"federation": trusted.roster.federation, "version": 1, "hash": trusted.hash})
    else:
        print(f"federation {trusted.roster.federation} ({name}) created: roster version 1")
        print(
            f"others trust it with: coop federation export {dir} > roster.json; coop federation join DIR roster.json"
        )
    return 0


@federation.command("join")
@data_dir_argument
@click.argument("roster_file", metavar="ROSTER_FILE", type=click.Path(dir_okay=False, path_type=Path))
@output_options
def join(dir: Path, roster_file: Path, as_json: bool, quiet: bool) -> int:
    """Trust a roster version obtained out of band (the first one on first use; later ones by the chain)."""
    data = (sys.stdin.buffer.read() if str(roster_file) == "-" else roster_file.read_bytes()).strip()
    with open_node(dir) as node:
        trusted = node.federation.roster.join(data, actor=LOCAL_ADMIN)
    if as_json:
        print_json({"federation": trusted.roster.federation, "version": trusted.roster.version})
    else:
        print(f"trusting federation {trusted.roster.federation} roster version {trusted.roster.version}")
    return 0


@federation.command("propose")
@data_dir_argument
@click.option("--admit", "admit", multiple=True, metavar="NODE_ID", help="admit a co-op (with --url, --name)")
@click.option("--url", "urls", multiple=True, help="the admitted co-op's URL (one per --admit)")
@click.option("--name", "names", multiple=True, help="the admitted co-op's name (one per --admit)")
@click.option("--remove", multiple=True, metavar="NODE_ID", help="remove a member")
@click.option("--rotate", metavar="NODE_ID", help="a member's new key (with --key)")
@click.option("--key", metavar="KEY", help="the new key of --rotate")
@click.option("--threshold", type=click.IntRange(1), help="a new threshold")
@click.option("--extend-days", type=click.IntRange(1, 3650), help="expire this many days from now")
@output_options
def propose(
    dir: Path,
    admit: tuple[str, ...],
    urls: tuple[str, ...],
    names: tuple[str, ...],
    remove: tuple[str, ...],
    rotate: str | None,
    key: str | None,
    threshold: int | None,
    extend_days: int | None,
    as_json: bool,
    quiet: bool,
) -> int:
    """Propose the roster's next version (signed here); prints the proposal id."""
    from coop.node.cli.exits import UsageError
    from coop.node.peering.roster import parse_changes

    if len(urls) != len(admit) or len(names) != len(admit):
        raise UsageError("give one --url and one --name for each --admit", field="--admit")
    if (rotate is None) != (key is None):
        raise UsageError("--rotate NODE_ID goes with --key KEY", field="--rotate")
    changes = parse_changes(
        admit=list(zip(admit, urls, names, strict=True)),
        remove=remove,
        rotate=[] if rotate is None or key is None else [(rotate, key)],
        threshold=threshold,
    )
    if not changes and extend_days is None:
        raise UsageError("propose at least one change", field="--admit")
    with open_node(dir) as node:
        proposal = node.federation.roster.propose(changes, extend_days=extend_days, actor=LOCAL_ADMIN)
    if as_json:
        print_json({"proposal": proposal})
    else:
        print(proposal)
    return 0


@federation.command("sign")
@data_dir_argument
@click.argument("proposal", metavar="PROPOSAL_ID|FILE")
@output_options
def sign(dir: Path, proposal: str, as_json: bool, quiet: bool) -> int:
    """Sign a pending proposal (its id, or a file holding its envelope: imported, then signed)."""
    source: str | bytes = proposal
    if proposal == "-":
        source = sys.stdin.buffer.read().strip()
    elif Path(proposal).is_file():
        source = Path(proposal).read_bytes().strip()
    with open_node(dir) as node:
        result = node.federation.roster.sign(source, actor=LOCAL_ADMIN)
    if as_json:
        print_json(result)
    elif result["adopted"]:
        print(f"signed: roster version {result['version']} is in force")
    else:
        print(f"signed {result['proposal']}: {result['needs']}")
    return 0


@federation.command("show")
@data_dir_argument
@output_options
def show(dir: Path, as_json: bool, quiet: bool) -> int:
    """The roster in force and the pending proposals."""
    with open_node(dir) as node:
        view = node.federation.roster.view()
    if as_json:
        print_json(view)
        return 0
    roster = view["roster"]
    if roster is None:
        print("no roster: coop federation create DIR --name N, or coop federation join DIR ROSTER_FILE")
        return 0
    state = "FROZEN (expired: extend it)" if roster["frozen"] else f"expires {when(roster['expires_at'])}"
    print(f"federation {roster['federation']} ({roster['name']}) version {roster['version']}, {state}")
    for warning in view["warnings"]:
        print(f"warning: {warning}")
    print(f"threshold {roster['threshold']} of {len(roster['members'])}")
    for member in roster["members"]:
        print(f"  {member['id']}  {member['name']}  {member['url']}")
    for p in view["proposals"]:
        print(
            f"proposal {p['id']} (version {p['version']}): {', '.join(p['changes']) or 'settings'}; {p['needs']}"
        )
    return 0


@federation.command("withdraw")
@data_dir_argument
@click.argument("proposal", metavar="PROPOSAL_ID")
@output_options
def withdraw(dir: Path, proposal: str, as_json: bool, quiet: bool) -> int:
    """Drop a pending proposal here (peers stop sending it; proposals also expire after 30 days)."""
    with open_node(dir) as node:
        proposal_id = node.federation.roster.withdraw(proposal, actor=LOCAL_ADMIN)
    if as_json:
        print_json({"proposal": proposal_id, "withdrawn": True})
    elif not quiet:
        print(f"withdrew {proposal_id}")
    return 0


@federation.command("export")
@data_dir_argument
@click.option("--proposal", metavar="PROPOSAL_ID", help="a pending proposal's envelope instead")
def export(dir: Path, proposal: str | None) -> int:
    """The roster version in force (or a proposal), as its signed envelope, on stdout."""
    with open_node(dir) as node:
        keeper = node.federation.roster
        data = keeper.export() if proposal is None else keeper.export_proposal(proposal)
    sys.stdout.write(data.decode("ascii") + "\n")  # base64 inside JSON: ASCII
    return 0


COMMANDS: list[click.Command] = [federation]
