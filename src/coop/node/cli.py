"""The ``coop`` command line.

Commands on a data directory (``init``, ``serve``, ``process``, ``release``,
``quarantine``, ``metrics``, ``retention``, ``member``, ``integration``) act on
the node directly; commands with ``--node URL`` (``contribute``, ``withdraw``,
``mine``, ``vote``) talk to a running node over HTTP as a member, with that
member's own token: nobody acts as a member without it.

Every error is one line on stderr and a non-zero exit code (mapped in
:data:`EXIT_CODES`); ``--json`` gives output a script can read.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NoReturn, TextIO

import httpx
import msgspec

from coop.governance import GovernanceError, PolicyError, parse_ai_use
from coop.node.collective.repository import audit
from coop.node.contributions.repository import Decision
from coop.node.contributions.repository import get_contribution as _get_contribution
from coop.node.contributions.repository import list_by_state as _list_by_state
from coop.node.contributions.submission import ContributionState
from coop.node.errors import (
    AuthError,
    BusyError,
    ForbiddenError,
    InputError,
    NodeError,
    NotFoundError,
    StateError,
    StorageError,
)
from coop.node.intake.chat import IntakeFormat
from coop.node.intake.formats import detect_format, parse_content
from coop.node.logs import escape_controls
from coop.node.members.accounts import Role
from coop.node.peering.refusals import SKEW_SHOWN, skew_text
from coop.node.storage.datadir import SERVE_LOCK, DataDir

__all__ = ["EXIT_CODES", "main"]

# Exit codes: 1 unexpected, 2 bad input or usage, 3 busy, 4 not found or wrong state,
# 5 authentication or permission, 6 cannot reach the node, 7 storage, 9 audit chain broken.
EXIT_CODES: Final[list[tuple[type[Exception], int]]] = [
    (PolicyError, 4),
    (InputError, 2),
    (GovernanceError, 2),
    (BusyError, 3),
    (NotFoundError, 4),
    (StateError, 4),
    (AuthError, 5),
    (ForbiddenError, 5),
    (StorageError, 7),
    (NodeError, 1),
]
_ENCODER: Final = msgspec.json.Encoder()
_RETRIES: Final = 4


class UnreachableError(NodeError):
    """The node at --node did not answer."""


class RemoteError(NodeError):
    """The node answered with a problem."""

    def __init__(self, message: str, *, status: int, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.status = status


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, as every other error: usage is in --help.
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def _print_json(value: object) -> None:
    sys.stdout.write(msgspec.json.format(_ENCODER.encode(value), indent=2).decode() + "\n")


def _when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


# -- data-directory commands -----------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    data = DataDir.create(Path(args.dir), name=args.name or Path(args.dir).resolve().name)
    from coop.node.storage.store import Store

    Store(data.db_path).close()  # create the database and apply migrations now
    identity = data.identity()
    if args.json:
        _print_json(
            {
                "node_id": identity.node_id,
                "fingerprint": identity.fingerprint,
                "dir": str(data.root),
            }
        )
    else:
        print(identity.node_id)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from coop.node.logs import configure_logging
    from coop.node.server import ServerKind, serve

    configure_logging()  # control characters from clients and peers escaped: one event, one line
    serve(
        Path(args.dir),
        host=args.host,
        port=args.port,
        kind=ServerKind(args.server),
        access_log=args.access_log,
    )
    return 0


def _with_node(args: argparse.Namespace, fn: Callable[[Any], int]) -> int:
    from coop.node.runtime import Node

    node = Node(Path(args.dir))
    try:
        return fn(node)
    finally:
        node.close()


def cmd_member_add(args: argparse.Namespace) -> int:
    from coop.node.storage.store import add_member

    def run(node: Any) -> int:
        role = Role.ADMIN if args.admin else Role.MEMBER
        now = node.now()

        def write(conn: Any) -> tuple[Any, str]:
            member, token = add_member(conn, name=args.name, role=role, salt=node.salt, now=now)
            audit(conn, seed=node.seed, at=now, actor=LOCAL_ADMIN, action="member.add",
                  payload={"name": member.name, "role": member.role.value})  # fmt: skip
            return member, token

        member, token = node.store.write(write)
        if args.json:
            _print_json({"name": member.name, "role": member.role, "token": token})
        else:
            print(token)
        return 0

    return _with_node(args, run)


def cmd_integration_add(args: argparse.Namespace) -> int:
    from coop.node.storage.store import add_integration

    def run(node: Any) -> int:
        now = node.now()

        def write(conn: Any) -> tuple[Any, str]:
            integration, key = add_integration(conn, name=args.name, now=now)
            audit(conn, seed=node.seed, at=now, actor=LOCAL_ADMIN, action="integration.add",
                  payload={"name": integration.name})  # fmt: skip
            return integration, key

        integration, key = node.store.write(write)
        if args.json:
            _print_json({"name": integration.name, "key": key})
        else:
            print(key)
        return 0

    return _with_node(args, run)


def cmd_member_token(args: argparse.Namespace) -> int:
    """``member revoke`` (token and web sessions gone) and ``member token`` (the same, then a new token)."""
    from coop.node.storage.store import member_credentials

    reissue = args.action == "token"

    def run(node: Any) -> int:
        now = node.now()

        def write(conn: Any) -> str | None:
            token = member_credentials(conn, name=args.name, reissue=reissue)
            audit(conn, seed=node.seed, at=now, actor=LOCAL_ADMIN,
                  action="member.token" if reissue else "member.revoke", payload={"name": args.name})  # fmt: skip
            return token

        token = node.store.write(write)
        if args.json:
            _print_json({"name": args.name, "token": token})
        elif token is not None:
            print(token)
        else:
            print(
                f"revoked {args.name}'s token and web sessions (a running node stops accepting them within 30 s)"
            )
        return 0

    return _with_node(args, run)


def cmd_integration_revoke(args: argparse.Namespace) -> int:
    from coop.node.storage.store import revoke_integration

    def run(node: Any) -> int:
        now = node.now()

        def write(conn: Any) -> None:
            revoke_integration(conn, name=args.name)
            audit(conn, seed=node.seed, at=now, actor=LOCAL_ADMIN, action="integration.revoke",
                  payload={"name": args.name})  # fmt: skip

        node.store.write(write)
        if args.json:
            _print_json({"name": args.name, "revoked": True})
        else:
            print(f"revoked integration {args.name} (a running node refuses its key within 30 s)")
        return 0

    return _with_node(args, run)


def cmd_process(args: argparse.Namespace) -> int:
    def run(node: Any) -> int:
        with node.processor_lock():
            report = node.process_pending()
        if args.json:
            _print_json(report)
        else:
            print(
                f"accepted {report.accepted}, quarantined {report.quarantined}, "
                f"duplicates {report.duplicate}, skipped {report.skipped}"
            )
        return 0

    return _with_node(args, run)


def cmd_release(args: argparse.Namespace) -> int:
    def run(node: Any) -> int:
        summary = node.cut_federated_release() if args.federated else node.cut_release()
        if args.json:
            _print_json(summary)
        else:
            print(f"federated/{summary.name}" if args.federated else summary.name)
        return 0

    return _with_node(args, run)


def cmd_quarantine(args: argparse.Namespace) -> int:
    def run(node: Any) -> int:
        if args.action == "list":
            items = node.store.read(lambda c: _list_by_state(c, ContributionState.QUARANTINED))
            if args.json:
                _print_json(items)
            else:
                for item in items:
                    print(f"{item.uid}  {_when(item.updated_at)}  {item.reason}")
                if not items:
                    print("quarantine is empty")
            return 0
        if not args.id:
            raise InputError(f"coop quarantine {args.action} needs the contribution's ID", field="ID")
        if args.action == "show":
            detail = node.store.read(lambda c: _get_contribution(c, args.id))
            if detail is None or detail.view.state is not ContributionState.QUARANTINED:
                raise NotFoundError(f"no quarantined contribution {args.id}", field="ID")
            if args.json:
                _print_json({"contribution": detail.view, "submission": detail.submission})
            else:
                print(f"{detail.view.uid}: {detail.view.reason}")
                if detail.submission is not None:
                    for message in detail.submission.chat.messages:
                        print(f"--- {message.role.value}\n{message.content}")
            return 0
        state = node.decide_quarantine(args.id, Decision(args.action), admin=args.admin)
        if args.json:
            _print_json({"uid": args.id, "state": state})
        else:
            print(f"{args.id} {state.value}")
        return 0

    return _with_node(args, run)


def cmd_metrics(args: argparse.Namespace) -> int:
    def run(node: Any) -> int:
        report = node.metrics()
        if args.json:
            _print_json(report)
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
            print(
                f"channel {channel}: v{state['release']} published {_when(state['at'])}, {state['lag']} behind"
            )
        return 0

    return _with_node(args, run)


def cmd_retention(args: argparse.Namespace) -> int:
    def run(node: Any) -> int:
        purged = node.purge_expired() if args.purge else None
        items = node.retention_report()
        if args.json:
            _print_json({"purged": purged, "held": items})
            return 0
        if purged is not None:
            print(
                f"purged {purged.security_events} security events, {purged.idempotency_keys} idempotency keys"
            )
        for item in items:
            until = f", oldest goes {_when(item.until)}" if item.until else ""
            print(f"{item.category}: {item.count} (oldest {_when(item.oldest)}{until}) - {item.rule}")
        return 0

    return _with_node(args, run)


# -- collective governance ---------------------------------------------------------------

LOCAL_ADMIN: Final = "local-admin"


def _assignments(pairs: list[str]) -> dict[str, object]:
    """KEY=VALUE pairs; a VALUE that reads as JSON (true, 500, ["tax"], null) is taken as such."""
    changes: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{pair!r} is not KEY=VALUE (e.g. embargo.on=true)", field="KEY=VALUE")
        try:
            value: object = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            value = raw
        changes[key.strip()] = value
    return changes


def _show_settings(view: Any, as_json: bool) -> None:
    if as_json:
        _print_json(view)
        return
    print(f"settings version {view.version} ({view.via}, by {view.actor or '-'} at {_when(view.at or None)})")
    print(f"digest {view.digest}")
    for section, value in msgspec.to_builtins(view.settings).items():
        if isinstance(value, dict) and section != "rules":
            for key, item in value.items():
                print(f"  {section}.{key} = {msgspec.json.encode(item).decode()}")
        elif section == "rules":
            for cls, rule in value["classes"].items():
                how = (
                    "an admin alone"
                    if rule["admin_alone"]
                    else (
                        f"a vote (quorum {rule['quorum_percent']}%, yes > {rule['threshold_percent']}%,"
                        f" {rule['voting_days']} days)"
                    )
                )
                print(f"  rules.classes.{cls}: changed by {how}")
        else:
            print(f"  {section} = {msgspec.json.encode(value).decode()}")


def _local_actor() -> Any:
    from coop.node.collective.repository import Actor

    return Actor(LOCAL_ADMIN, admin=True)


def cmd_settings(args: argparse.Namespace) -> int:
    def run(node: Any) -> int:
        if args.action == "show":
            _show_settings(node.settings(), args.json)
            return 0
        if not args.pairs:
            raise InputError("name at least one KEY=VALUE (e.g. defaults.license=CC0-1.0)", field="KEY=VALUE")
        view = node.change_settings(_assignments(args.pairs), actor=_local_actor())
        _show_settings(view, args.json)
        return 0

    return _with_node(args, run)


def cmd_embargo(args: argparse.Namespace) -> int:
    def run(node: Any) -> int:
        on = args.state == "on"
        embargo = {
            "on": on,
            "tags": (args.tag or []) if on else [],
            "languages": (args.language or []) if on else [],
        }
        view = node.change_settings({"embargo": embargo}, actor=_local_actor())
        if args.json:
            _print_json({"version": view.version, "embargo": view.settings.embargo})
        else:
            e = view.settings.embargo
            scope = (
                "the whole co-op"
                if e.whole
                else ", ".join([f"tag {t}" for t in e.tags] + [f"language {lang}" for lang in e.languages])
            )
            print(f"embargo {'on for ' + scope if e.on else 'off'} (settings version {view.version})")
        return 0

    return _with_node(args, run)


def cmd_freeze(args: argparse.Namespace) -> int:
    def run(node: Any) -> int:
        view = node.change_settings({"quality_freeze": args.state == "on"}, actor=_local_actor())
        if args.json:
            _print_json({"version": view.version, "quality_freeze": view.settings.quality_freeze})
        else:
            print(
                f"quality freeze {'on' if view.settings.quality_freeze else 'off'} (settings version {view.version})"
            )
        return 0

    return _with_node(args, run)


def _show_proposal(view: Any) -> None:
    print(
        f"proposal {view.id} [{view.status.value}] by {view.opened_by}: {escape_controls(view.reason)}\n"
        f"  changes {msgspec.json.encode(view.changes).decode()}\n"
        f"  yes {view.yes}, no {view.no}, abstain {view.abstain}, not voted {view.missing} "
        f"(electorate {view.electorate}; quorum {view.quorum_needed} votes, yes > {view.threshold_percent}%)"
        f"; closes {_when(view.closes_at)}"
    )


def cmd_propose(args: argparse.Namespace) -> int:
    def run(node: Any) -> int:
        from coop.node.collective.repository import Actor

        view = node.propose(
            _assignments(args.pairs),
            reason=args.reason,
            actor=Actor(args.by, admin=True),
            voting_days=args.days,
        )
        if args.json:
            _print_json(view)
        else:
            print(view.id)
        return 0

    return _with_node(args, run)


def cmd_proposals(args: argparse.Namespace) -> int:
    def run(node: Any) -> int:
        from coop.node.collective.repository import list_proposals

        node.close_expired_proposals()
        items = node.store.read(list_proposals)
        if args.json:
            _print_json(items)
        else:
            for item in items:
                _show_proposal(item)
            if not items:
                print("no proposals")
        return 0

    return _with_node(args, run)


def cmd_vote(args: argparse.Namespace) -> int:
    """A member's own vote, cast over HTTP with their token (an admin cannot vote for them)."""
    from coop.node.collective.repository import ProposalView

    with _client(args) as client:
        response = _request(
            client,
            "POST",
            f"/api/v1/governance/proposals/{args.proposal}/votes",
            json={"choice": args.choice},
        )
    view = msgspec.json.decode(response.content, type=ProposalView)
    if args.json:
        _print_json(view)
    else:
        _show_proposal(view)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    def run(node: Any) -> int:
        from coop.node.collective.repository import audit_entries

        if args.action == "verify":
            report = node.verify_audit()
            if args.json:
                _print_json({"ok": bool(report), **msgspec.to_builtins(report)})
            elif report:
                print(f"audit chain intact: {report.checked} entries, every one signed by this node")
                if report.warning:
                    sys.stderr.write(f"coop: warning: {report.warning}\n")
            if not report:
                if not args.json:
                    where = "" if report.first_bad is None else f" at entry {report.first_bad}"
                    sys.stderr.write(f"coop: error: audit chain broken{where}: {report.problem}\n")
                return 9
            return 0
        entries = node.store.read(lambda c: audit_entries(c, after=args.after, limit=args.limit))
        if args.json:
            _print_json(entries)
        else:
            for e in entries:
                print(
                    f"{e.seq:>5}  {_when(e.at)}  {e.actor:<16} {e.action:<18} {msgspec.json.encode(e.payload).decode()}"
                )
        return 0

    return _with_node(args, run)


def cmd_payouts(args: argparse.Namespace) -> int:
    from coop.node.http.params import release_version

    def run(node: Any) -> int:
        view = node.payout(
            release_version(args.release, field="--release", error=InputError),
            amount=args.amount,
            currency=args.currency,
            actor=LOCAL_ADMIN,
            supersede=args.supersede,
        )
        if args.json:
            _print_json(view)
            return 0
        ledger = view.ledger
        print(f"payout {view.id} for {ledger.release}: {ledger.amount} {ledger.currency} over {ledger.records} records"
              f" ({ledger.excluded_withdrawn} withdrawn, paid nothing)")  # fmt: skip
        if view.supersedes is not None:
            print(f"  supersedes payout {view.supersedes}: {view.supersede_reason}")
        for line in ledger.lines:
            print(
                f"  {line.payee:<32} {line.amount:>14} {ledger.currency}  ({line.records} records, weight {line.weight})"
            )
        folder = node.data.root / "payouts"
        print(f"ledger: {folder}/payout-{view.id}-{ledger.release}.csv and .json")
        return 0

    return _with_node(args, run)


# -- federation --------------------------------------------------------------------------------


def cmd_identity(args: argparse.Namespace) -> int:
    def run(node: Any) -> int:
        if args.action == "rotate":
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
            identity = node.identity
            if args.json:
                _print_json(
                    {"node_id": identity.node_id, "public_key": identity.public_key.hex(), "manifest": report}
                )
            else:
                print(
                    f"new key {identity.public_key.hex()} announced in manifest {report.seq} (signed by both keys)"
                )
            return 0
        identity = node.identity
        info = {
            "node_id": identity.node_id,
            "public_key": identity.public_key.hex(),
            "fingerprint": identity.fingerprint,
            "coop": node.config.node.name,
        }
        if args.json:
            _print_json(info)
        else:
            print(f"node id      {info['node_id']}")
            print(f"signing key  {info['public_key']}")
            print(f"fingerprint  {info['fingerprint']}  (of the node id: read it aloud to a pinning peer)")
            print(f"co-op        {info['coop']}")
            print(
                f"peers pin it with: coop peers add DIR {node.config.node.public_url} --key {info['node_id']}"
            )
            halted = node.federation.own_fork()
            if halted is not None:
                print(f"FORKED: {halted}")
        return 0

    return _with_node(args, run)


def cmd_peers(args: argparse.Namespace) -> int:
    def run(node: Any) -> int:
        if args.action == "add":
            if not args.url or not args.key:
                raise InputError("coop peers add DIR URL --key NODE_ID", field="URL")
            peer = node.federation.add_peer(args.url, args.key, name=args.name, actor=LOCAL_ADMIN)
            if args.json:
                _print_json(peer)
            else:
                print(f"pinned {peer.node_id[:16]}... at {peer.url}")
            return 0
        if args.action == "remove":
            if not args.url:
                raise InputError("coop peers remove DIR NODE_ID", field="NODE_ID")
            removed = node.federation.remove_peer(args.url, actor=LOCAL_ADMIN)
            if args.json:
                _print_json({"removed": removed})
            else:
                print(
                    f"unpinned {removed[:16]}... (no more gossip with it; pin it again with coop peers add)"
                )
            return 0
        peers = node.federation.peers()
        if args.json:
            _print_json(peers)
            return 0
        halted = node.federation.own_fork()
        if halted is not None:
            print(f"FORKED: {halted}")
        if not peers:
            print("no peers pinned yet: coop peers add DIR URL --key NODE_ID")
        for peer in peers:
            flags = " FORKED" if peer.forked else ""
            seq = "-" if peer.seq is None else str(peer.seq)
            error = f", last error: {peer.last_error}" if peer.last_error else ""
            skew = peer.clock_skew
            if skew is not None and abs(skew) >= SKEW_SHOWN:
                error += f", {skew_text(skew)} (this node's clock minus the peer's)"
            if peer.refused:
                last = peer.refused[0]
                error += f", last refused {_when(last.at)}: {last.step}: {last.detail}"
            print(
                f"{peer.node_id[:16]}  {peer.url}  seq {seq}  last contact {_when(peer.last_contact)}"
                f"  ({peer.contacts} ok, {peer.failures} failed{error}){flags}"
            )
        return 0

    return _with_node(args, run)


def cmd_sync(args: argparse.Namespace) -> int:
    def run(node: Any) -> int:
        reports = node.federation.gossip_round(every_peer=True)
        if args.json:
            _print_json(reports)
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

    return _with_node(args, run)


# -- federated evaluation ------------------------------------------------------------------------


def cmd_eval(args: argparse.Namespace) -> int:
    from coop.node.evaluation import requester as evalrun

    action = args.eval_action
    if action == "keygen":
        public = evalrun.keygen(Path(args.file))
        if args.json:
            _print_json({"public_key": public, "file": args.file})
        else:
            print(public)
        return 0
    if action == "request":
        report_path = evalrun.request(args)
        check = evalrun.verify(report_path, trust=None)
        print(evalrun.markdown(report_path))
        print(f"signed report: {report_path} (and {report_path.with_suffix('.md')})", file=sys.stderr)
        return 0 if check else 9
    if action == "verify":
        check = evalrun.verify(Path(args.report), trust=args.trust)
        if args.json:
            _print_json({"ok": bool(check), "problems": check.problems})
        elif check:
            report = check.report
            assert report is not None
            print(
                f"report verified: {len(report.answers)} co-ops, {report.aggregate.records} records;"
                " every signature checks and the aggregate is the sum of the attestations"
            )
        else:
            for problem in check.problems:
                sys.stderr.write(f"coop: error: {problem}\n")
        return 0 if check else 9

    def run(node: Any) -> int:
        if action == "requests":
            items = node.evaluation.requests()
            if args.json:
                _print_json(items)
            for item in [] if args.json else items:
                print(
                    f"{item.hash[:16]}  {item.status:<9} {item.task:<16} {_when(item.received_at)}  {item.purpose}"
                )
            return 0
        full = next((r.hash for r in node.evaluation.requests() if r.hash.startswith(args.hash)), args.hash)
        view = node.evaluation.decide(full, approve=action == "approve", admin=LOCAL_ADMIN)
        print(f"{view.hash[:16]} {view.status}")
        return 0

    return _with_node(args, run)


# -- commands against a running node ------------------------------------------------


def _client(args: argparse.Namespace) -> httpx.Client:
    return httpx.Client(
        base_url=args.node.rstrip("/"),
        headers={"Authorization": f"Bearer {args.token}", "User-Agent": "coop-cli"},
        timeout=httpx.Timeout(30.0, connect=5.0),
    )


def _request(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One call with bounded retries on connection failures and 5xx (safe: keys are idempotent)."""
    delay = 0.5
    last: Exception | None = None
    for attempt in range(_RETRIES):
        try:
            response = client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            last = exc
        else:
            if response.status_code < 500 or attempt == _RETRIES - 1:
                return _checked(response)
            last = RemoteError(_problem_text(response), status=response.status_code)
        if attempt < _RETRIES - 1:
            time.sleep(delay)
            delay *= 2
    if isinstance(last, RemoteError):
        raise last
    raise UnreachableError(f"cannot reach {client.base_url}: {last}") from last


def _problem_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        detail = body.get("detail") or body.get("title") or response.reason_phrase
        field = body.get("field")
        return f"{detail} [{field}]" if field else str(detail)
    except (ValueError, AttributeError):
        return f"HTTP {response.status_code} {response.reason_phrase}"


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        status = response.status_code
        text = f"the node refused ({status}): {_problem_text(response)}"
        error: type[NodeError] = {
            401: AuthError,
            403: ForbiddenError,
            404: NotFoundError,
            409: StateError,
        }.get(status, InputError if status < 500 else RemoteError)
        if error is RemoteError:
            raise RemoteError(text, status=status)
        raise error(text)
    return response


def split_export(data: bytes, fmt: IntakeFormat) -> list[bytes]:
    """One JSON document per chat, so that each chat becomes its own contribution."""
    if fmt is not IntakeFormat.OPENWEBUI:
        return [data]
    stripped = data.strip()
    if stripped.startswith(b"["):
        try:
            return [bytes(item) for item in msgspec.json.decode(stripped, type=list[msgspec.Raw])]
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            return [data]
    if stripped.startswith(b"{") and b"\n" in stripped:
        lines = [line.strip() for line in stripped.splitlines() if line.strip()]
        if len(lines) > 1 and all(line.startswith(b"{") for line in lines):
            return lines
    return [data]


def cmd_contribute(args: argparse.Namespace) -> int:
    if not args.consent:
        raise InputError("--consent is required: it says you agree to the co-op's terms", field="--consent")
    if args.ai_use is not None:
        # Refuse a typo here, before anything is sent: it must never drop an opt-out.
        parse_ai_use(args.ai_use, field="--ai-use", strict=True)
    path = Path(args.file)
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {args.file}: {exc.strerror}", field="FILE") from None
    fmt = IntakeFormat(args.format) if args.format else detect_format(data)
    parse_content(data, fmt)  # fail here, with the parser's message, before sending anything
    documents = split_export(data, fmt)
    if args.chat_id and len(documents) > 1:
        documents = [data]
    options: dict[str, object] = {
        "label": args.label,
        "consent": True,
        "channel": "cli",
        "format": fmt.value,
        "license": args.license,
        "ai_use": args.ai_use,
        "eval": args.eval,
        "scope": args.scope,
        "attribution": args.attribution,
        "note": args.note,
        "correction": args.correction,
        "tags": args.tag or [],
        "language": args.language,
        "chat_id": args.chat_id,
    }
    options = {k: v for k, v in options.items() if v is not None}
    results = []
    with _client(args) as client:
        for document in documents:
            content: object = msgspec.Raw(document) if fmt is not IntakeFormat.TEXT else document.decode()
            body = _ENCODER.encode({**options, "content": content})
            # The same chat with the same choices gets the same key: re-running the command is safe.
            key = "cli-" + hashlib.sha256(body).hexdigest()[:40]
            response = _request(
                client,
                "POST",
                "/api/v1/contributions",
                content=body,
                headers={"Content-Type": "application/json", "Idempotency-Key": key},
            )
            results.append(response.json())
    if args.json:
        _print_json(results)
    else:
        for item in results:
            again = "" if item.get("created", True) else " (already shared)"
            print(f"{item['uid']} {item['state']}{again}")
            for notice in item.get("notices", []):
                print(f"  note: {notice}", file=sys.stderr)
    return 0


def cmd_withdraw(args: argparse.Namespace) -> int:
    with _client(args) as client:
        response = _request(client, "DELETE", f"/api/v1/contributions/{args.uid}")
    item = response.json()
    if args.json:
        _print_json(item)
    else:
        print(f"{item['uid']} {item['state']}")
    return 0


def cmd_mine(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.export:
            response = _request(client, "GET", "/api/v1/me/contributions.jsonl")
            Path(args.export).write_bytes(response.content)
            print(f"wrote {args.export}")
            return 0
        items = _request(client, "GET", "/api/v1/me/contributions").json()
    if args.json:
        _print_json(items)
    else:
        for item in items:
            released = f" in {item['released_in']}" if item.get("released_in") else ""
            print(f"{item['uid']}  {item['state']}{released}  {item['label']}  {item['license']}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from coop.node.channels.publish import publish

    def run(node: Any) -> int:
        report = publish(
            node,
            args.channel,
            target=args.target,
            release=args.release,
            dry_run=args.dry_run,
            node_url=args.node_url,
            progress=None if args.json else lambda line: print(line, file=sys.stderr),
        )
        if args.json:
            _print_json(report)
            return 0
        if args.dry_run:
            names = ", ".join(report.planned) or "nothing (the target is up to date)"
            print(f"dry run: would publish {names} to {report.channel} {report.target}")
            if report.plan:
                print(f"commit plan: {report.plan}")
        elif not report.shipped:
            print(f"{report.channel} {report.target} already holds {report.already[-1]}: nothing to publish")
        for item in report.shipped:
            print(f"{item.release} -> {item.channel} {item.target} {item.ref}")
        return 0

    return _with_node(args, run)


def cmd_site(args: argparse.Namespace) -> int:
    from coop.node.channels.site import build_site

    def run(node: Any) -> int:
        report = build_site(node, Path(args.out), node_url=args.node_url)
        if args.json:
            _print_json(report)
        else:
            n = len(report.releases)
            print(
                f"built {report.pages} pages ({report.records} records, {n} release{'' if n == 1 else 's'}) "
                f"in {report.out}"
            )
        return 0

    return _with_node(args, run)


def cmd_backup(args: argparse.Namespace) -> int:
    from coop.node.storage.backup import backup
    from coop.node.storage.datadir import DataDir

    report = backup(DataDir.open(Path(args.dir)), Path(args.out))
    if args.json:
        _print_json(report)
    else:
        print(report.out)
    return 0


# -- the parser ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="coop", description="Run and use a Co-op Flywheel node.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(fn=fn)
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
        return p

    p = add("init", cmd_init, "Create a data directory for a new node; prints the node id.")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--name", help="the co-op's name (default: the directory's name)")

    p = add("serve", cmd_serve, "Serve the node's HTTP API and run its pipeline in the background.")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--server", choices=["granian", "uvicorn"], default="granian", help="the ASGI server")
    p.add_argument("--access-log", action="store_true", help="log each response: client, path, status")

    member = sub.add_parser("member", help="Manage members.").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    p = member.add_parser("add", help="Add a member; prints their token once, alone on stdout.")
    p.set_defaults(fn=cmd_member_add)
    p.add_argument("dir", metavar="DIR")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--admin", action="store_true", help="make the member an admin")
    p.add_argument("--json", action="store_true")
    p = member.add_parser("revoke", help="Revoke a member's token and web sessions (a lost or leaked token).")
    p.set_defaults(fn=cmd_member_token)
    p.add_argument("dir", metavar="DIR")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true")
    p = member.add_parser("token", help="Revoke a member's token and print a new one, once.")
    p.set_defaults(fn=cmd_member_token)
    p.add_argument("dir", metavar="DIR")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true")

    integration = sub.add_parser("integration", help="Manage integrations (Open WebUI).").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    p = integration.add_parser("add", help="Add an integration; prints its API key once.")
    p.set_defaults(fn=cmd_integration_add)
    p.add_argument("dir", metavar="DIR")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true")
    p = integration.add_parser("revoke", help="Delete an integration; its API key stops working.")
    p.set_defaults(fn=cmd_integration_revoke)
    p.add_argument("dir", metavar="DIR")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true")

    p = add(
        "contribute",
        cmd_contribute,
        "Share chats from a file (Open WebUI export, text or messages JSON).",
    )
    p.add_argument("file", metavar="FILE", help="the file to share ('-' for standard input)")
    p.add_argument("--node", required=True, metavar="URL")
    p.add_argument("--token", required=True)
    p.add_argument("--label", required=True, choices=["good", "fail"])
    p.add_argument("--consent", action="store_true", help="you agree to the co-op's terms (required)")
    p.add_argument("--license", choices=["CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0"])
    p.add_argument("--ai-use", metavar="EXPR", help="e.g. 'train-ai=n;exceptions=cc-cr, search=y'")
    p.add_argument("--eval", choices=["y", "n"], help="allow federated evaluation over it")
    p.add_argument("--scope", choices=["node", "federation", "public"])
    p.add_argument("--attribution", metavar="MODE", help="username, pseudonym:NAME or anonymous")
    p.add_argument("--format", choices=[f.value for f in IntakeFormat])
    p.add_argument("--note")
    p.add_argument("--correction", help="what the right answer would have been")
    p.add_argument("--tag", action="append", help="a tag (repeatable)")
    p.add_argument("--language", help="BCP 47 tag, e.g. en or pt-BR")
    p.add_argument("--chat-id", help="share only this chat of an export")

    p = add("process", cmd_process, "Run the pipeline once over the waiting room; prints counts.")
    p.add_argument("dir", metavar="DIR")

    p = add("release", cmd_release, "Cut the next release; prints its version (vN).")
    p.add_argument("dir", metavar="DIR")
    p.add_argument(
        "--federated",
        action="store_true",
        help="combine this co-op's released records with the public records it mirrors (releases/federated/vN)",
    )

    p = add("quarantine", cmd_quarantine, "Review quarantined contributions.")
    p.add_argument("action", choices=["list", "show", "release", "reject"])
    p.add_argument("dir", metavar="DIR")
    p.add_argument("id", metavar="ID", nargs="?")
    p.add_argument("--admin", default="local-admin", help="the admin name recorded with the decision")

    p = add(
        "withdraw",
        cmd_withdraw,
        "Withdraw one of your contributions (erased; excluded from releases).",
    )
    p.add_argument("uid", metavar="UID")
    p.add_argument("--node", required=True, metavar="URL")
    p.add_argument("--token", required=True)

    p = add("mine", cmd_mine, "List your contributions on a node, or download them all (--export FILE).")
    p.add_argument("--node", required=True, metavar="URL")
    p.add_argument("--token", required=True)
    p.add_argument("--export", metavar="FILE", help="write every contribution as JSON lines")

    p = add("metrics", cmd_metrics, "Stage counts and yields of the record-generation model.")
    p.add_argument("dir", metavar="DIR")

    p = add("settings", cmd_settings, "Show or change the co-op's settings (as the local admin).")
    p.add_argument("action", choices=["show", "set"])
    p.add_argument("dir", metavar="DIR")
    p.add_argument(
        "pairs", metavar="KEY=VALUE", nargs="*", help="e.g. defaults.license=CC0-1.0 embargo.on=true"
    )

    p = add("embargo", cmd_embargo, "Switch the embargo on (whole co-op, or by --tag / --language) or off.")
    p.add_argument("state", choices=["on", "off"])
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--tag", action="append", help="embargo records with this tag (repeatable)")
    p.add_argument("--language", action="append", help="embargo records in this language (repeatable)")

    p = add("freeze", cmd_freeze, "Switch the quality freeze on or off.")
    p.add_argument("state", choices=["on", "off"])
    p.add_argument("dir", metavar="DIR")

    p = add("propose", cmd_propose, "Put a change of settings to the vote; prints the proposal id.")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("pairs", metavar="KEY=VALUE", nargs="+")
    p.add_argument("--reason", required=True, help="why, in words members will read")
    p.add_argument("--days", type=int, help="voting time (default: the rule of the setting)")
    p.add_argument("--by", default=LOCAL_ADMIN, help="who proposes (recorded in the audit log)")

    p = add("proposals", cmd_proposals, "List proposals with their tallies.")
    p.add_argument("dir", metavar="DIR")

    p = add("vote", cmd_vote, "Cast your vote on a proposal (as the member whose token this is).")
    p.add_argument("proposal", metavar="ID", type=int)
    p.add_argument("choice", choices=["yes", "no", "abstain"])
    p.add_argument("--node", required=True, metavar="URL")
    p.add_argument("--token", required=True, help="your own member token")

    p = add("audit", cmd_audit, "Show the audit log, or verify its chain and signatures.")
    p.add_argument("action", choices=["show", "verify"])
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--after", type=int, default=0, help="entries after this sequence number")
    p.add_argument("--limit", type=int, default=1000)

    p = add(
        "payouts", cmd_payouts, "Split an amount paid for a release between contributors and the commons."
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--release", required=True, metavar="vN")
    p.add_argument("--amount", required=True, help="decimal text, e.g. 1000.00")
    p.add_argument("--currency", required=True, help="ISO 4217 code, e.g. EUR")
    p.add_argument(
        "--supersede",
        metavar="REASON",
        help="replace the payout the release already has, saying why (recorded in the audit log)",
    )

    p = add("identity", cmd_identity, "Show this node's id and key, or rotate its signing key.")
    p.add_argument("action", choices=["show", "rotate"])
    p.add_argument("dir", metavar="DIR")

    p = add(
        "peers", cmd_peers, "Pin a peer co-op's node (add), unpin it (remove NODE_ID), or list the peers."
    )
    p.add_argument("action", choices=["add", "remove", "list"])
    p.add_argument("dir", metavar="DIR")
    p.add_argument(
        "url", metavar="URL", nargs="?", help="add: the peer's URL; remove: its node id (or a prefix)"
    )
    p.add_argument("--key", metavar="NODE_ID", help="the peer's node id (coop identity show on the peer)")
    p.add_argument("--name", help="a name for people")

    p = add("sync", cmd_sync, "Run one round of gossip with every peer now and report what moved.")
    p.add_argument("dir", metavar="DIR")

    evaluation = sub.add_parser("eval", help="Federated evaluation with Flower.").add_subparsers(
        dest="eval_action", required=True, parser_class=_Parser
    )

    def eval_cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        q = evaluation.add_parser(name, help=help_text, description=help_text)
        q.set_defaults(fn=cmd_eval)
        q.add_argument("--json", action="store_true", help="print machine-readable JSON")
        return q

    q = eval_cmd("keygen", "Make a requester key (Ed25519, mode 0600); prints its public key.")
    q.add_argument("file", metavar="FILE")
    q = eval_cmd("request", "Build, sign and run an evaluation request; prints the signed report.")
    q.add_argument("--key", required=True, metavar="FILE", help="the requester key (coop eval keygen)")
    q.add_argument("--task", required=True, help="the evaluator, e.g. label-agreement")
    q.add_argument("--model", required=True, metavar="FILE", help="the model artifact")
    q.add_argument("--target", action="append", metavar="NODE_ID", help="a co-op to ask (repeat)")
    q.add_argument("--purpose", help="one line members will read")
    q.add_argument("--resubmit", metavar="REQUEST", help="run a request signed before (REPORT.request.json)")
    q.add_argument("--label", action="append", choices=["good", "fail"], help="only records with this label")
    q.add_argument("--tag", action="append", help="only records with this tag")
    q.add_argument("--language", action="append", help="only records in this language")
    q.add_argument("--local-node", action="append", metavar="URL,TOKEN_FILE",
                   help="simulation engine: a SuperNode for the node at URL (repeat)")  # fmt: skip
    q.add_argument("--superlink", metavar="HOST:PORT", help="deployment engine: the SuperLink's control API")
    q.add_argument("--root-certificates", metavar="FILE", help="TLS root certificate of the SuperLink")
    q.add_argument(
        "--shared-dir", metavar="DIR", help="deployment: a folder the ServerApp can read and write"
    )
    q.add_argument("--out", required=True, metavar="REPORT", help="where to write the signed report (.json)")
    q.add_argument("--timeout", type=float, default=120.0)
    q = eval_cmd("verify", "Check every signature of a report and that its aggregate adds up.")
    q.add_argument("report", metavar="REPORT")
    q.add_argument(
        "--trust", action="append", metavar="NODE_ID", help="only these co-ops may attest (repeat)"
    )
    q = eval_cmd("requests", "Evaluation requests this node has seen.")
    q.add_argument("dir", metavar="DIR")
    for verb in ("approve", "refuse"):
        q = eval_cmd(
            verb, f"{verb.capitalize()} an evaluation request (when the eval policy needs an admin)."
        )
        q.add_argument("dir", metavar="DIR")
        q.add_argument("hash", metavar="HASH", help="the request hash (a prefix will do)")

    p = add(
        "publish", cmd_publish, "Publish the releases a channel does not hold yet (git, Hugging Face, site)."
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--channel", required=True, choices=["git", "hf", "site"])
    p.add_argument(
        "--target", help="repository path or URL (git), owner/name (hf), folder (site); default: node.toml"
    )
    p.add_argument("--release", metavar="vN", help="publish up to this release (default: the latest)")
    p.add_argument(
        "--dry-run", action="store_true", help="say what would go; hf: write the exact commit plan"
    )
    p.add_argument("--node-url", metavar="URL", help="site: the node's public URL, linked from the pages")

    site = sub.add_parser("site", help="The static public site.").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    p = site.add_parser("build", help="Render the public pages and releases to static files in OUT.")
    p.set_defaults(fn=cmd_site)
    p.add_argument("dir", metavar="DIR")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--node-url", metavar="URL", help="the node's public URL, linked from the pages")
    p.add_argument("--json", action="store_true")

    p = add(
        "backup", cmd_backup, "Copy a node (running or not) into OUT: database, keys, salt, config, releases."
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("out", metavar="OUT", help="a new folder; it is itself a data directory")

    p = add("retention", cmd_retention, "What the node holds and until when.")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--purge", action="store_true", help="purge expired security data now")
    return parser


# What never reaches a terminal raw: C0 controls but newline and tab, DEL, C1 (0x9b is a CSI),
# the line and paragraph separators and the bidirectional overrides ("Trojan Source").
_UNPRINTABLE: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


class _Printable(io.TextIOBase):
    """The command line's output: text a peer, a member or a proxy wrote (a peer's refusal in
    ``coop peers list``, a chat title, an error message) is shown, never obeyed by the terminal.

    Each such character is written as ``\\uXXXX``: readable, and inside ``--json`` output the
    same escape JSON itself uses, so the document still parses to the same value.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(_UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:
        return self._stream.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding


def main(argv: Sequence[str] | None = None) -> int:
    # Everything a node writes (database, keys, releases) is private to its operator.
    os.umask(0o077)
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Printable(out), _Printable(err)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = out, err


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.fn(args)
        sys.stdout.flush()  # inside the try: a closed pipe (`coop payouts | head`) is caught below
        return code
    except BrokenPipeError:
        # The reader went away: say nothing more (no traceback at exit), as `cat | head` does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, the status a shell reports for a writer whose reader left
    except (NodeError, GovernanceError) as exc:
        code = next((c for kind, c in EXIT_CODES if isinstance(exc, kind)), 1)
        if isinstance(exc, UnreachableError):
            code = 6
        field = f" [{exc.field}]" if exc.field and exc.field not in exc.message else ""
        sys.stderr.write(f"coop: error: {exc.message}{field}\n")
        return code
    except KeyboardInterrupt:
        sys.stderr.write("coop: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
