"""Federation from the command line: the node's identity, its pinned peers, a gossip round now."""

from __future__ import annotations

from pathlib import Path

import click

from coop.node.cli.options import LOCAL_ADMIN, data_dir_argument, open_node, output_options
from coop.node.cli.output import Progress, print_json, when

__all__ = ["COMMANDS"]


@click.command("identity")
@click.argument("action", type=click.Choice(["show", "rotate"]))
@data_dir_argument
@output_options
def identity(action: str, dir: Path, as_json: bool, quiet: bool) -> int:
    """Show this node's id, key and the URL peers should use, or rotate its signing key."""
    from coop.node.errors import BusyError
    from coop.node.storage.datadir import SERVE_LOCK

    with open_node(dir) as node:
        if action == "rotate":
            # A serving node would go on signing with the old key: rotate only while it is stopped.
            try:
                with (
                    node.data.lock(SERVE_LOCK, purpose="coop serve"),
                    node.data.lock("processor", purpose="a pipeline run"),
                ):
                    report = node.federation.rotate_key(actor=LOCAL_ADMIN)
            except BusyError as exc:
                if "is already running" not in exc.message:
                    raise
                raise BusyError(f"{exc.message}: stop it before rotating the key") from None
            ident = node.identity
            if as_json:
                print_json(
                    {"node_id": ident.node_id, "public_key": ident.public_key.hex(), "manifest": report}
                )
            else:
                print(
                    f"new key {ident.public_key.hex()} announced in manifest {report.seq} (signed by both keys)"
                )
            return 0
        ident = node.identity
        url = node.config.node.public_url
        info = {
            "node_id": ident.node_id,
            "public_key": ident.public_key.hex(),
            "fingerprint": ident.fingerprint,
            "coop": node.config.node.name,
            "url": url,
        }
        if as_json:
            print_json(info)
            return 0
        print(f"node id      {info['node_id']}")
        print(f"signing key  {info['public_key']}")
        print(f"fingerprint  {info['fingerprint']}  (of the node id: read it aloud to a pinning peer)")
        print(f"co-op        {info['coop']}")
        print(f"url          {url}  (node.public_url: the URL peers should use)")
        print(f"peers pin it with: coop peers add DIR {url} --key {info['node_id']}")
        halted = node.federation.own_fork()
        if halted is not None:
            print(f"FORKED: {halted}")
    return 0


@click.command("peers")
@click.argument("action", type=click.Choice(["add", "remove", "list"]))
@data_dir_argument
@click.argument("url", metavar="[URL|NODE_ID]", required=False)
@click.option("--key", metavar="NODE_ID", help="add: the peer's node id (coop identity show on the peer)")
@click.option("--name", help="add: a name for people")
@output_options
def peers(
    action: str, dir: Path, url: str | None, key: str | None, name: str | None, as_json: bool, quiet: bool
) -> int:
    """Pin a peer co-op's node (add DIR URL --key NODE_ID), unpin it (remove DIR NODE_ID, or a
    prefix of it), or list the peers."""
    from coop.node.errors import InputError
    from coop.node.peering.refusals import SKEW_SHOWN, skew_text

    with open_node(dir) as node:
        if action == "add":
            if not url or not key:
                raise InputError("coop peers add DIR URL --key NODE_ID", field="URL")
            peer = node.federation.add_peer(url, key, name=name, actor=LOCAL_ADMIN)
            if as_json:
                print_json(peer)
            else:
                print(f"pinned {peer.node_id[:16]}... at {peer.url}")
            return 0
        if action == "remove":
            if not url:
                raise InputError("coop peers remove DIR NODE_ID", field="NODE_ID")
            removed = node.federation.remove_peer(url, actor=LOCAL_ADMIN)
            if as_json:
                print_json({"removed": removed})
            else:
                print(
                    f"unpinned {removed[:16]}... (no more gossip with it; pin it again with coop peers add)"
                )
            return 0
        items = node.federation.peers()
        if as_json:
            print_json(items)
            return 0
        halted = node.federation.own_fork()
    if halted is not None:
        print(f"FORKED: {halted}")
    if not items:
        print("no peers pinned yet: coop peers add DIR URL --key NODE_ID")
    for peer in items:
        flags = " FORKED" if peer.forked else ""
        seq = "-" if peer.seq is None else str(peer.seq)
        error = f", last error: {peer.last_error}" if peer.last_error else ""
        skew = peer.clock_skew
        if skew is not None and abs(skew) >= SKEW_SHOWN:
            error += f", {skew_text(skew)} (this node's clock minus the peer's)"
        if peer.refused:
            last = peer.refused[0]
            error += f", last refused {when(last.at)}: {last.step}: {last.detail}"
        print(
            f"{peer.node_id[:16]}  {peer.url}  seq {seq}  last contact {when(peer.last_contact)}"
            f"  ({peer.contacts} ok, {peer.failures} failed{error}){flags}"
        )
    return 0


@click.command("sync")
@data_dir_argument
@output_options
def sync(dir: Path, as_json: bool, quiet: bool) -> int:
    """Run one round of gossip with every peer now and report what moved (exit 1 if all failed)."""
    progress = Progress(quiet=quiet, as_json=as_json)
    with open_node(dir) as node:
        progress(f"gossip with {len(node.federation.peers())} peers…")
        reports = node.federation.gossip_round(every_peer=True)
    if as_json:
        print_json(reports)
        return 0
    if not reports:
        print("no peers to sync with")
    for r in reports:
        if r.error:
            print(f"{r.peer}: failed: {r.error}")
        elif r.in_sync and not r.records:
            print(f"{r.peer}: in sync")
        else:
            print(
                f"{r.peer}: {r.pulled.accepted} manifests in, {r.pushed.accepted} out, {r.records} records in"
                + (f", {r.pulled.equivocation} equivocations" if r.pulled.equivocation else "")
                + (f", {len(r.pulled.rejected)} rejected" if r.pulled.rejected else "")
            )
    return 1 if reports and all(r.error for r in reports) else 0


COMMANDS: list[click.Command] = [identity, peers, sync]
