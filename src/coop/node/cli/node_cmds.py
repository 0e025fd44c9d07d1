"""Commands that run the node from its data directory: init, serve, process, release, quarantine,
metrics, retention, backup, publish, site."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from coop.node.cli.options import check_data_dir, data_dir_argument, open_node, output_options
from coop.node.cli.output import Progress, print_json, when

if TYPE_CHECKING:
    from coop.node.metrics import MetricsReport
    from coop.node.releases.publications import Publication

__all__ = ["COMMANDS", "public_url_mismatch", "shipped_line"]


@click.command("init")
@data_dir_argument
@click.option("--name", help="the co-op's name (default: the directory's name)")
@output_options
def init(dir: Path, name: str | None, as_json: bool, quiet: bool) -> int:
    """Create a data directory DIR for a new node; prints the node id."""
    from coop.node.storage.datadir import DataDir
    from coop.node.storage.store import Store

    data = DataDir.create(dir, name=name or dir.resolve().name)
    Store(data.db_path).close()  # create the database and apply migrations now
    identity = data.identity()
    if as_json:
        print_json({"node_id": identity.node_id, "fingerprint": identity.fingerprint, "dir": str(data.root)})
    else:
        print(identity.node_id)
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def public_url_mismatch(public_url: str, host: str, port: int) -> str | None:
    """Why ``node.public_url`` cannot be the address ``coop serve`` listens on, or None.

    Only a URL that names this machine directly (loopback, or the very address served) is
    compared; a DNS name or another address is taken to be a proxy in front of the node.
    """
    parts = urlsplit(public_url)
    public_host = (parts.hostname or "").lower()
    try:
        public_port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return f"node.public_url {public_url!r} has an invalid port"
    wildcard = host in ("0.0.0.0", "::", "")  # noqa: S104 (recognising it, not binding)
    if _is_loopback(public_host):
        if not wildcard and not _is_loopback(host):
            return f"node.public_url {public_url} is this machine's loopback, but the node serves on {host}"
        if public_port != port:
            return (
                f"node.public_url {public_url} names port {public_port}, but the node serves on port {port}"
            )
        if wildcard:
            return (
                f"node.public_url {public_url} is a loopback address: peers on other machines "
                "cannot use it (set node.public_url in node.toml)"
            )
        return None
    if public_host == host.strip("[]").lower() and public_port != port:
        return f"node.public_url {public_url} names port {public_port}, but the node serves on port {port}"
    return None


@click.command("serve")
@data_dir_argument
@click.option("--host", default="127.0.0.1", show_default=True, help="the address to listen on")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="the port to listen on"
)
@click.option(
    "--server",
    type=click.Choice(["granian", "uvicorn"]),
    default="granian",
    show_default=True,
    help="the ASGI server",
)
@click.option("--access-log", is_flag=True, help="log each response: client, path, status")
@output_options
def serve(dir: Path, host: str, port: int, server: str, access_log: bool, as_json: bool, quiet: bool) -> int:
    """Serve the node's HTTP API and run its pipeline in the background."""
    from coop.node.logs import configure_logging
    from coop.node.server import ServerKind
    from coop.node.server import serve as run_server
    from coop.node.storage.datadir import DataDir

    check_data_dir(dir)
    public_url = DataDir.open(dir).config().node.public_url

    def starting() -> None:  # once the directory and the address are ours: a refusal stays one line
        problem = public_url_mismatch(public_url, host, port)
        if problem is not None:
            sys.stderr.write(f"coop: warning: {problem}\n")

    configure_logging()  # control characters from clients and peers escaped: one event, one line
    run_server(dir, host=host, port=port, kind=ServerKind(server), access_log=access_log, starting=starting)
    return 0


@click.command("process")
@data_dir_argument
@output_options
def process(dir: Path, as_json: bool, quiet: bool) -> int:
    """Run the pipeline once over the waiting room; prints counts."""
    with open_node(dir) as node, node.processor_lock():
        report = node.process_pending()
    if as_json:
        print_json(report)
    else:
        print(
            f"accepted {report.accepted}, quarantined {report.quarantined}, "
            f"duplicates {report.duplicate}, skipped {report.skipped}"
        )
    return 0


@click.command("release")
@data_dir_argument
@click.option(
    "--federated",
    is_flag=True,
    help="combine this co-op's released records with the public records it mirrors (releases/federated/vN)",
)
@output_options
def release(dir: Path, federated: bool, as_json: bool, quiet: bool) -> int:
    """Cut the next release; prints its version (vN)."""
    progress = Progress(quiet=quiet, as_json=as_json)
    with open_node(dir) as node:
        progress("cutting the federated release…" if federated else "cutting the release…")
        summary = (
            node.cut_federated_release(progress=progress.callback)
            if federated
            else node.cut_release(progress=progress.callback)
        )
    progress(f"cut {summary.name}")
    if as_json:
        print_json(summary)
    else:
        print(f"federated/{summary.name}" if federated else summary.name)
    return 0


@click.command("quarantine")
@click.argument("action", type=click.Choice(["list", "show", "release", "reject"]))
@data_dir_argument
@click.argument("uid", metavar="ID", required=False)
@click.option(
    "--admin", default="local-admin", show_default=True, help="the admin name recorded with the decision"
)
@output_options
def quarantine(action: str, dir: Path, uid: str | None, admin: str, as_json: bool, quiet: bool) -> int:
    """Review quarantined contributions: list; show, release or reject ID."""
    from coop.node.contributions.repository import Decision, get_contribution, list_by_state
    from coop.node.contributions.submission import ContributionState
    from coop.node.errors import InputError, NotFoundError

    with open_node(dir) as node:
        if action == "list":
            items = node.store.read(lambda c: list_by_state(c, ContributionState.QUARANTINED))
            if as_json:
                print_json(items)
            else:
                for item in items:
                    print(f"{item.uid}  {when(item.updated_at)}  {item.reason}")
                if not items:
                    print("quarantine is empty")
            return 0
        if not uid:
            raise InputError(f"coop quarantine {action} needs the contribution's ID", field="ID")
        if action == "show":
            detail = node.store.read(lambda c: get_contribution(c, uid))
            if detail is None or detail.view.state is not ContributionState.QUARANTINED:
                raise NotFoundError(f"no quarantined contribution {uid}", field="ID")
            if as_json:
                print_json({"contribution": detail.view, "submission": detail.submission})
            else:
                print(f"{detail.view.uid}: {detail.view.reason}")
                if detail.submission is not None:
                    for message in detail.submission.chat.messages:
                        print(f"--- {message.role.value}\n{message.content}")
            return 0
        state = node.decide_quarantine(uid, Decision(action), admin=admin)
    if as_json:
        print_json({"uid": uid, "state": state})
    else:
        print(f"{uid} {state.value}")
    return 0


@click.command("metrics")
@data_dir_argument
@output_options
def metrics(dir: Path, as_json: bool, quiet: bool) -> int:
    """Stage counts and yields of the record-generation model."""
    with open_node(dir) as node:
        report = node.metrics()
    if as_json:
        print_json(report)
        return 0
    from coop.node.metrics import STAGE_ORDER

    header = ["channel"] + [s.value for s in STAGE_ORDER]
    print("  ".join(f"{h:>12}" for h in header))
    for channel, counts in sorted(report.stages.items()):
        print("  ".join([f"{channel:>12}"] + [f"{counts.get(s.value, 0):>12}" for s in STAGE_ORDER]))
    for channel, ratios in sorted(report.yields.items()):
        shown = ", ".join(f"{k} {v:.0%}" for k, v in ratios.items() if v is not None)
        print(f"yields {channel}: {shown or '-'}")
    for channel, windows in sorted(report.published.items()):
        print(f"published {channel}: " + ", ".join(f"{w} {n}" for w, n in windows.items()))
    print("states: " + ", ".join(f"{k} {v}" for k, v in sorted(report.states.items())))
    print(f"releases: {report.releases}")
    for channel, state in sorted(report.channels.items()):
        print(f"channel {channel}: v{state['release']} published {when(state['at'])}, {state['lag']} behind")
    for line in _model_lines(report):
        print(line)
    return 0


def _model_lines(report: MetricsReport) -> list[str]:
    """Yields per intake route, then each publish channel's ledger: P^k, M, Λ_k, D^k, h_k, p_k."""

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    def joined(values: dict[str, int] | dict[str, float]) -> str:
        return ", ".join(f"{name} {value:g}" for name, value in values.items())

    lines = []
    for route, y in sorted(report.routes.items()):
        steps = {"p_c": y.p_c, "p_s": y.p_s, "p_a": y.p_a, "p_t": y.p_t} | {
            f"p_{k}": v for k, v in y.p_k.items()
        }
        lines.append(f"route {route}: " + ", ".join(f"{step} {pct(v)}" for step, v in steps.items()))
    for k, m in sorted(report.publish.items()):
        hazard = "-" if m.hazard is None else f"{m.hazard:g}"
        lines += [
            f"publish {k} ({m.mode}): {m.published} published; {joined(m.lifecycle)}",
            f"  per day: {joined(m.throughput)} (records: {joined(m.published_window)})",
            f"  retracted {m.retracted} ({joined(m.retracted_window)}), pending {m.retraction_pending},"
            f" hazard {hazard} per record-week over {m.record_weeks:g}",
        ]
    return lines


@click.command("retention")
@data_dir_argument
@click.option("--purge", is_flag=True, help="purge expired security data now")
@output_options
def retention(dir: Path, purge: bool, as_json: bool, quiet: bool) -> int:
    """What the node holds and until when."""
    with open_node(dir) as node:
        purged = node.purge_expired() if purge else None
        items = node.retention_report()
    if as_json:
        print_json({"purged": purged, "held": items})
        return 0
    if purged is not None:
        print(f"purged {purged.security_events} security events, {purged.idempotency_keys} idempotency keys")
    for item in items:
        until = f", oldest goes {when(item.until)}" if item.until else ""
        print(f"{item.category}: {item.count} (oldest {when(item.oldest)}{until}) - {item.rule}")
    return 0


@click.command("backup")
@data_dir_argument
@click.argument("out", metavar="OUT", type=click.Path(path_type=Path))
@output_options
def backup(dir: Path, out: Path, as_json: bool, quiet: bool) -> int:
    """Copy a node (running or not) from DIR into OUT, a new folder that is itself a data
    directory: database, keys, salt, config, releases."""
    from coop.node.storage.backup import backup as run_backup
    from coop.node.storage.datadir import DataDir

    progress = Progress(quiet=quiet, as_json=as_json)
    progress(f"backing up {dir} into {out}…")
    report = run_backup(DataDir.open(check_data_dir(dir)), out)
    if as_json:
        print_json(report)
    else:
        print(report.out)
    return 0


@click.command("publish")
@data_dir_argument
@click.option(
    "--channel", required=True, type=click.Choice(["git", "hf", "site", "bluesky"]), help="where to publish"
)
@click.option(
    "--target",
    help="repository path or URL (git), owner/name (hf), folder (site), handle (bluesky); default: node.toml",
)
@click.option("--release", metavar="vN", help="publish up to this release (default: the latest)")
@click.option("--dry-run", is_flag=True, help="say what would go; hf: write the exact commit plan")
@click.option("--node-url", metavar="URL", help="site: the node's public URL, linked from the pages")
@output_options
def publish(
    dir: Path,
    channel: str,
    target: str | None,
    release: str | None,
    dry_run: bool,
    node_url: str | None,
    as_json: bool,
    quiet: bool,
) -> int:
    """Publish the releases a channel does not hold yet (git, Hugging Face, site, Bluesky posts)."""
    from coop.node.channels.publish import publish as run_publish
    from coop.node.web.static_site import site_builder

    progress = Progress(quiet=quiet, as_json=as_json)
    with open_node(dir) as node:
        report = run_publish(
            node,
            channel,
            target=target,
            release=release,
            dry_run=dry_run,
            node_url=node_url,
            build_site=site_builder(node),
            progress=progress.callback,
        )
    if report.deletion_warning:  # posts left up: said even with --quiet, not fatal (retried next time)
        print(f"warning: {report.deletion_warning}", file=sys.stderr)
    if as_json:
        print_json(report)
        return 0
    if dry_run:
        names = ", ".join(report.planned) or "nothing (the target is up to date)"
        print(f"dry run: would publish {names} to {report.channel} {report.target}")
        if report.plan:
            print(f"commit plan: {report.plan}")
        for post in report.posts:  # a microblog's posts, as they would go (nothing is sent)
            print(f"post: {post}" if not post.startswith("delete ") else post)
    for ended in report.settled:  # review mode: reviews that ended since the last look
        print(f"{ended.release} review on {report.channel}: {ended.state}")
    if not dry_run and not report.shipped:
        holds = f"already holds {report.already[-1]}" if report.already else "holds no new release to take"
        print(f"{report.channel} {report.target} {holds}: nothing to publish")
    for item in report.shipped:
        print(shipped_line(item))
    return 0


def shipped_line(item: Publication) -> str:
    """What ``coop publish`` says of one release it shipped: live at once, or offered for review."""
    from coop.node.channels.git import REVIEW_PREFIX
    from coop.node.releases.channel_records import PublicationState

    if item.state == PublicationState.OPEN:  # a review branch: live only once the maintainers merge it
        return f"{item.release} offered for review on {item.channel} {REVIEW_PREFIX}{item.release} {item.ref}"
    return f"{item.release} -> {item.channel} {item.target} {item.ref}"


@click.group("site")
def site() -> None:
    """The static public site."""


@site.command("build")
@data_dir_argument
@click.argument("out", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--node-url", metavar="URL", help="the node's public URL, linked from the pages")
@output_options
def site_build(dir: Path, out: Path, node_url: str | None, as_json: bool, quiet: bool) -> int:
    """Render the public pages and releases of DIR to static files in OUT."""
    from coop.node.web.static_site import build_site

    progress = Progress(quiet=quiet, as_json=as_json)
    with open_node(dir) as node:
        progress(f"building the site in {out}…")
        report = build_site(node, out, node_url=node_url)
    if as_json:
        print_json(report)
    else:
        n = len(report.releases)
        print(
            f"built {report.pages} pages ({report.records} records, {n} release{'' if n == 1 else 's'}) "
            f"in {report.out}"
        )
    return 0


COMMANDS: list[click.Command] = [
    init,
    serve,
    process,
    release,
    quarantine,
    metrics,
    retention,
    backup,
    publish,
    site,
]
