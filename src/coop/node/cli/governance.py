"""The co-op's collective switches, as the local admin: settings, embargo, freeze, propose,
proposals, audit, payouts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from coop.node.cli.exits import Exit
from coop.node.cli.options import LOCAL_ADMIN, data_dir_argument, open_node, output_options
from coop.node.cli.output import print_json, when

__all__ = ["COMMANDS", "show_proposal"]


def _assignments(pairs: tuple[str, ...]) -> dict[str, object]:
    """KEY=VALUE pairs; a VALUE that reads as JSON (true, 500, ["tax"], null) is taken as such."""
    import msgspec

    from coop.governance.nesting import NESTED_TOO_DEEP, json_too_deep
    from coop.node.errors import InputError

    changes: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{pair!r} is not KEY=VALUE (e.g. embargo.on=true)", field="KEY=VALUE")
        if json_too_deep(raw):
            raise InputError(NESTED_TOO_DEEP, field=key.strip())
        try:
            value: object = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            value = raw
        changes[key.strip()] = value
    return changes


def _local_actor() -> Any:
    from coop.node.collective.settings import Actor

    return Actor(LOCAL_ADMIN, admin=True)


def _show_settings(view: Any, as_json: bool) -> None:
    import msgspec

    if as_json:
        print_json(view)
        return
    print(f"settings version {view.version} ({view.via}, by {view.actor or '-'} at {when(view.at or None)})")
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


@click.command("settings")
@click.argument("action", type=click.Choice(["show", "set"]))
@data_dir_argument
@click.argument("pairs", metavar="[KEY=VALUE]...", nargs=-1)
@output_options
def settings(action: str, dir: Path, pairs: tuple[str, ...], as_json: bool, quiet: bool) -> int:
    """Show or change the co-op's settings (as the local admin), e.g. coop settings set DIR
    defaults.license=CC0-1.0 embargo.on=true 'access.gated=["CC-BY-4.0"]'."""
    from coop.governance import InvalidValueError
    from coop.node.errors import InputError

    with open_node(dir) as node:
        if action == "show":
            _show_settings(node.settings(), as_json)
            return 0
        if not pairs:
            raise InputError("name at least one KEY=VALUE (e.g. defaults.license=CC0-1.0)", field="KEY=VALUE")
        changes = _assignments(pairs)
        try:
            view = node.change_settings(changes, actor=_local_actor())
        except InvalidValueError as exc:
            raise _with_list_example(exc, changes) from None
    _show_settings(view, as_json)
    return 0


def _with_list_example(exc: Any, changes: dict[str, object]) -> Any:
    """A list setting given one bare word (``access.gated=CC-BY-4.0``): say how to write a list."""
    import msgspec

    if not str(exc.message).startswith("Expected `array`") or not exc.field:
        return exc
    value = changes.get(exc.field)
    example = msgspec.json.encode([value if isinstance(value, str) else "..."]).decode()
    return type(exc)(
        f"{exc.message}: {exc.field} is a list, written in JSON (quoted for the shell),"
        f" e.g. '{exc.field}={example}'",
        field=exc.field,
    )


@click.command("embargo")
@click.argument("state", type=click.Choice(["on", "off"]))
@data_dir_argument
@click.option("--tag", multiple=True, help="embargo records with this tag (repeatable)")
@click.option("--language", multiple=True, help="embargo records in this language (repeatable)")
@output_options
def embargo(
    state: str, dir: Path, tag: tuple[str, ...], language: tuple[str, ...], as_json: bool, quiet: bool
) -> int:
    """Switch the embargo on (whole co-op, or by --tag / --language) or off."""
    on = state == "on"
    change = {"on": on, "tags": list(tag) if on else [], "languages": list(language) if on else []}
    with open_node(dir) as node:
        view = node.change_settings({"embargo": change}, actor=_local_actor())
    if as_json:
        print_json({"version": view.version, "embargo": view.settings.embargo})
    else:
        e = view.settings.embargo
        scope = (
            "the whole co-op"
            if e.whole
            else ", ".join([f"tag {t}" for t in e.tags] + [f"language {lang}" for lang in e.languages])
        )
        print(f"embargo {'on for ' + scope if e.on else 'off'} (settings version {view.version})")
    return 0


@click.command("freeze")
@click.argument("state", type=click.Choice(["on", "off"]))
@data_dir_argument
@output_options
def freeze(state: str, dir: Path, as_json: bool, quiet: bool) -> int:
    """Switch the quality freeze on or off."""
    with open_node(dir) as node:
        view = node.change_settings({"quality_freeze": state == "on"}, actor=_local_actor())
    if as_json:
        print_json({"version": view.version, "quality_freeze": view.settings.quality_freeze})
    else:
        on = "on" if view.settings.quality_freeze else "off"
        print(f"quality freeze {on} (settings version {view.version})")
    return 0


def show_proposal(view: Any) -> None:
    import msgspec

    from coop.node.logs import escape_controls

    print(
        f"proposal {view.id} [{view.status.value}] by {view.opened_by}: {escape_controls(view.reason)}\n"
        f"  changes {msgspec.json.encode(view.changes).decode()}\n"
        f"  yes {view.yes}, no {view.no}, abstain {view.abstain}, not voted {view.missing} "
        f"(electorate {view.electorate}; quorum {view.quorum_needed} votes, yes > {view.threshold_percent}%)"
        f"; closes {when(view.closes_at)}"
    )


@click.command("propose")
@data_dir_argument
@click.argument("pairs", metavar="KEY=VALUE...", nargs=-1, required=True)
@click.option("--reason", required=True, help="why, in words members will read")
@click.option("--days", type=int, help="voting time (default: the rule of the setting)")
@click.option("--by", default=LOCAL_ADMIN, show_default=True, help="who proposes (recorded in the audit log)")
@output_options
def propose(
    dir: Path, pairs: tuple[str, ...], reason: str, days: int | None, by: str, as_json: bool, quiet: bool
) -> int:
    """Put a change of settings to the vote; prints the proposal id."""
    from coop.node.collective.settings import Actor

    with open_node(dir) as node:
        view = node.propose(_assignments(pairs), reason=reason, actor=Actor(by, admin=True), voting_days=days)
    if as_json:
        print_json(view)
    else:
        print(view.id)
    return 0


@click.command("proposals")
@data_dir_argument
@output_options
def proposals(dir: Path, as_json: bool, quiet: bool) -> int:
    """List proposals with their tallies."""
    from coop.node.collective.proposals import list_proposals

    with open_node(dir) as node:
        node.close_expired_proposals()
        items = node.store.read(list_proposals)
    if as_json:
        print_json(items)
    else:
        for item in items:
            show_proposal(item)
        if not items:
            print("no proposals")
    return 0


@click.command("audit")
@click.argument("action", type=click.Choice(["show", "verify"]))
@data_dir_argument
@click.option("--after", type=int, default=0, show_default=True, help="entries after this sequence number")
@click.option("--limit", type=int, default=1000, show_default=True, help="at most this many entries")
@output_options
def audit(action: str, dir: Path, after: int, limit: int, as_json: bool, quiet: bool) -> int:
    """Show the audit log, or verify its chain and signatures (exit 9 when broken)."""
    import msgspec

    from coop.node.collective.audit import audit_entries

    with open_node(dir) as node:
        if action == "verify":
            report = node.verify_audit()
        else:
            entries = node.store.read(lambda c: audit_entries(c, after=after, limit=limit))
    if action == "verify":
        if as_json:
            print_json({"ok": bool(report), **msgspec.to_builtins(report)})
        elif report:
            print(f"audit chain intact: {report.checked} entries, every one signed by this node")
            if report.warning:
                sys.stderr.write(f"coop: warning: {report.warning}\n")
        if not report:
            if not as_json:
                where = "" if report.first_bad is None else f" at entry {report.first_bad}"
                sys.stderr.write(f"coop: error: audit chain broken{where}: {report.problem}\n")
            return Exit.VERIFY_FAILED
        return 0
    if as_json:
        print_json(entries)
    else:
        for e in entries:
            payload = msgspec.json.encode(e.payload).decode()
            print(f"{e.seq:>5}  {when(e.at)}  {e.actor:<16} {e.action:<18} {payload}")
    return 0


@click.command("payouts")
@data_dir_argument
@click.option("--release", "version", required=True, metavar="vN", help="the release paid for")
@click.option("--amount", required=True, help="decimal text, e.g. 1000.00")
@click.option("--currency", required=True, help="ISO 4217 code, e.g. EUR")
@click.option(
    "--supersede",
    metavar="REASON",
    help="replace the payout the release already has, saying why (recorded in the audit log)",
)
@output_options
def payouts(
    dir: Path, version: str, amount: str, currency: str, supersede: str | None, as_json: bool, quiet: bool
) -> int:
    """Split an amount paid for a release between contributors and the commons."""
    from coop.node.errors import InputError
    from coop.node.http.params import release_version

    with open_node(dir) as node:
        view = node.payout(
            release_version(version, field="--release", error=InputError),
            amount=amount,
            currency=currency,
            actor=LOCAL_ADMIN,
            supersede=supersede,
        )
        folder = node.data.root / "payouts"
    if as_json:
        print_json(view)
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
    print(f"ledger: {folder}/payout-{view.id}-{ledger.release}.csv and .json")
    return 0


COMMANDS: list[click.Command] = [settings, embargo, freeze, propose, proposals, audit, payouts]
