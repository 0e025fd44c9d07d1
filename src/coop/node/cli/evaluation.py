"""``coop eval …``: federated evaluation with Flower, as a requester (keygen, request, verify) and
as a node's admin (requests, approve, refuse)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import msgspec

from coop.node.cli.exits import Exit
from coop.node.cli.options import LOCAL_ADMIN, data_dir_argument, open_node, output_options
from coop.node.cli.output import Progress, print_json, when

__all__ = ["COMMANDS"]


@click.group("eval")
def evaluation() -> None:
    """Federated evaluation with Flower."""


@evaluation.command("keygen")
@click.argument("file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@output_options
def keygen(file: Path, as_json: bool, quiet: bool) -> int:
    """Make a requester key in FILE (Ed25519, mode 0600); prints its public key."""
    from coop.node.evaluation import requester

    public = requester.keygen(file)
    if as_json:
        print_json({"public_key": public, "file": str(file)})
    else:
        print(public)
    return 0


@evaluation.command("request")
@click.option("--key", required=True, metavar="FILE", help="the requester key (coop eval keygen)")
@click.option("--task", required=True, help="the evaluator, e.g. label-agreement")
@click.option("--model", required=True, metavar="FILE", help="the model artifact")
@click.option("--target", multiple=True, metavar="NODE_ID", help="a co-op to ask (repeat)")
@click.option("--purpose", help="one line members will read")
@click.option("--resubmit", metavar="REQUEST", help="run a request signed before (REPORT.request.json)")
@click.option(
    "--label", multiple=True, type=click.Choice(["good", "fail"]), help="only records with this label"
)
@click.option("--tag", multiple=True, help="only records with this tag (repeat)")
@click.option("--language", multiple=True, help="only records in this language (repeat)")
@click.option(
    "--local-node",
    multiple=True,
    metavar="URL,TOKEN_FILE",
    help="simulation engine: a SuperNode for the node at URL (repeat)",
)
@click.option("--superlink", metavar="HOST:PORT", help="deployment engine: the SuperLink's control API")
@click.option("--root-certificates", metavar="FILE", help="TLS root certificate of the SuperLink")
@click.option("--shared-dir", metavar="DIR", help="deployment: a folder the ServerApp can read and write")
@click.option("--out", required=True, metavar="REPORT", help="where to write the signed report (.json)")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="seconds to wait for the run")
@output_options
def request(as_json: bool, quiet: bool, **options: object) -> int:
    """Build, sign and run an evaluation request; prints the signed report (exit 9 if it does not verify)."""
    from coop.node.evaluation import requester

    progress = Progress(quiet=quiet, as_json=as_json)
    # The requester's options by name (repeated ones as lists, None when not given).
    args = msgspec.convert(
        {k: (list(v) or None) if isinstance(v, tuple) else v for k, v in options.items()},
        requester.RequestOptions,
    )
    report_path = requester.request(args, progress=progress.callback)
    check = requester.verify(report_path, trust=None)
    print(requester.markdown(report_path))
    print(f"signed report: {report_path} (and {report_path.with_suffix('.md')})", file=sys.stderr)
    return 0 if check else Exit.VERIFY_FAILED


@evaluation.command("verify")
@click.argument("report", metavar="REPORT", type=click.Path(path_type=Path))
@click.option("--trust", multiple=True, metavar="NODE_ID", help="only these co-ops may attest (repeat)")
@output_options
def verify(report: Path, trust: tuple[str, ...], as_json: bool, quiet: bool) -> int:
    """Check every signature of a report and that its aggregate adds up (exit 9 if not)."""
    from coop.node.evaluation import requester

    check = requester.verify(report, trust=list(trust) or None)
    if as_json:
        print_json({"ok": bool(check), "problems": check.problems})
    elif check:
        shown = check.report
        assert shown is not None
        print(
            f"report verified: {len(shown.answers)} co-ops, {shown.aggregate.records} records;"
            " every signature checks and the aggregate is the sum of the attestations"
        )
    else:
        for problem in check.problems:
            sys.stderr.write(f"coop: error: {problem}\n")
    return 0 if check else Exit.VERIFY_FAILED


@evaluation.command("requests")
@data_dir_argument
@output_options
def requests(dir: Path, as_json: bool, quiet: bool) -> int:
    """Evaluation requests this node has seen."""
    with open_node(dir) as node:
        items = node.evaluation.requests()
    if as_json:
        print_json(items)
        return 0
    for item in items:
        state = f"{item.state} ({item.reason})" if item.reason else item.state
        if item.state == "answered" and item.records is not None:
            state = f"answered ({item.records} records)"
        print(f"{item.hash[:16]}  {state:<28} {item.task:<16} {when(item.received_at)}  {item.purpose}")
    return 0


def _decide(dir: Path, prefix: str, *, approve: bool) -> int:
    with open_node(dir) as node:
        full = next((r.hash for r in node.evaluation.requests() if r.hash.startswith(prefix)), prefix)
        view = node.evaluation.decide(full, approve=approve, admin=LOCAL_ADMIN)
    print(f"{view.hash[:16]} {view.status}")
    return 0


@evaluation.command("approve")
@data_dir_argument
@click.argument("hash_prefix", metavar="HASH")
@output_options
def approve(dir: Path, hash_prefix: str, as_json: bool, quiet: bool) -> int:
    """Approve an evaluation request HASH (a prefix will do) when the eval policy needs an admin."""
    return _decide(dir, hash_prefix, approve=True)


@evaluation.command("refuse")
@data_dir_argument
@click.argument("hash_prefix", metavar="HASH")
@output_options
def refuse(dir: Path, hash_prefix: str, as_json: bool, quiet: bool) -> int:
    """Refuse an evaluation request HASH (a prefix will do) when the eval policy needs an admin."""
    return _decide(dir, hash_prefix, approve=False)


COMMANDS: list[click.Command] = [evaluation]
