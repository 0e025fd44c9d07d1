"""``coop eval …``: federated evaluation with Flower, as a requester (keygen, request, verify) and
as a node's admin (requests, approve, refuse)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import msgspec

from coop.node.cli.exits import Exit, UsageError
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
@click.option(
    "--model", required=True, metavar="PATH", help="the model artifact, or its folder (packed for you)"
)
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
@click.option(
    "--shared-dir",
    metavar="DIR",
    help="a folder the ServerApp can read and write (the job, progress.jsonl, answers.json; removed after the run); default: a temp one",
)
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
@click.argument("dir", metavar="DIR", required=False, type=click.Path(path_type=Path))
@click.option(
    "--key",
    metavar="KEY",
    type=click.Path(dir_okay=False, path_type=Path),
    help="your requests (requester key)",
)
@output_options
def requests(dir: Path | None, key: Path | None, as_json: bool, quiet: bool) -> int:
    """Evaluation requests a node has seen (DIR), or those you signed and where each stands (--key KEY)."""
    if (dir is None) == (key is None):
        raise UsageError(
            "name a node's data directory DIR, or --key KEY for the requests you signed", field="DIR"
        )
    if key is not None:
        return _my_requests(key, as_json=as_json)
    assert dir is not None
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


def _my_requests(key: Path, *, as_json: bool) -> int:
    """The requester's side: each request signed with KEY, and each co-op's answer in its report."""
    import time

    from coop.node.evaluation import ledger

    items = ledger.entries(key, now=int(time.time()))
    if as_json:
        print_json(items)
        return 0
    if not items:
        print(f"no request signed with {key} yet")
    for item in items:
        print(
            f"{item.hash[:16]}  {item.state.value:<10} {item.task:<16} {when(item.created_at)}  {item.purpose}"
        )
        print(f"  model {item.model_name} ({item.model_sha256[:16]}), report {item.report}")
        if item.reported_at is None:
            until = "expired" if item.state.value == "expired" else "expires"
            print(f"  no report yet ({until} {when(item.expires_at)})")
        for answer in item.answers:
            who = answer.coop or answer.node_id[:16]
            if answer.records is not None:
                print(f"  {who}: {answer.state.value} ({answer.records} records)")
            elif answer.reason:
                detail = f": {answer.detail}" if answer.detail else ""
                print(f"  {who}: {answer.state.value} ({answer.reason}){detail}")
            else:
                print(f"  {who}: {answer.state.value}")
    return 0


@evaluation.command("publish")
@data_dir_argument
@click.argument("report", metavar="REPORT", type=click.Path(dir_okay=False, path_type=Path))
@output_options
def publish(dir: Path, report: Path, as_json: bool, quiet: bool) -> int:
    """Publish a signed eval report on this co-op's leaderboard (it must verify; each co-op's consent decides what shows)."""
    try:
        data = report.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {report}: {exc.strerror}", field="REPORT") from None
    with open_node(dir) as node:
        view = node.eval_reports.publish(data, actor=LOCAL_ADMIN)
    if as_json:
        print_json(view)
        return 0
    shown = sum(1 for c in view.coops if c.node_id)
    aggregate = view.aggregate_note or "aggregate shown"
    print(f"published {view.hash}: {shown}/{len(view.coops)} co-ops named; {aggregate}")
    return 0


@evaluation.command("unpublish")
@data_dir_argument
@click.argument("hash_prefix", metavar="HASH")
@output_options
def unpublish(dir: Path, hash_prefix: str, as_json: bool, quiet: bool) -> int:
    """Take a published eval report HASH (8 digits or more will do) off the pages."""
    with open_node(dir) as node:
        removed = node.eval_reports.unpublish(hash_prefix, actor=LOCAL_ADMIN)
    if as_json:
        print_json({"unpublished": removed})
    else:
        print(f"unpublished {removed}")
    return 0


@evaluation.command("tiny-model")
@click.argument("out_dir", metavar="OUT_DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True, help="the random weights' seed")
@output_options
def tiny_model(out_dir: Path, seed: int, as_json: bool, quiet: bool) -> int:
    """Write a tiny random causal LM (ONNX) to OUT_DIR, to try --task lm-preference --model OUT_DIR."""
    try:
        from coop.eval import tiny_lm
    except ImportError:
        from coop.eval.lm import LM_EXTRA_MESSAGE

        raise click.ClickException(LM_EXTRA_MESSAGE) from None
    if out_dir.exists() and any(out_dir.iterdir()):
        raise click.ClickException(f"{out_dir} is not empty: choose a new folder")
    tiny_lm.build_tiny_lm(out_dir, seed=seed)
    if as_json:
        print_json({"folder": str(out_dir), "seed": seed})
    elif not quiet:
        # The folder itself is the artifact: coop eval request packs it the same way every time.
        print(f"{out_dir}: config.json, tokenizer.json, model.onnx")
        print(f"try it: coop eval request --task lm-preference --model {out_dir} ...")
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
