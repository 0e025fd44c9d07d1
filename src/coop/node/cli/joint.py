"""``coop joint``: joint actions -- co-ops acting together, k of the n they name co-signing.

Each named co-op decides by its own rules (an admin alone, or its members' vote); its node
then co-signs, and the signatures travel by gossip.  Commands act as the local admin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import click

from coop.node.cli.options import LOCAL_ADMIN, data_dir_argument, open_node, output_options
from coop.node.cli.output import print_json, when

__all__ = ["COMMANDS"]


def _actor() -> Any:
    from coop.node.collective.settings import Actor

    return Actor(LOCAL_ADMIN, admin=True)


def _selector(view: Any) -> str:
    parts = [f"tag {t}" for t in view.tags] + [f"language {lang}" for lang in view.languages]
    parts += [f"licence {lic}" for lic in view.licenses]
    return ", ".join(parts) or "the whole co-op"


def _what(view: Any) -> str:
    if view.kind == "embargo":
        return f"embargo on {_selector(view)}"
    if view.kind == "preference":
        until = f" until {view.condition}" if view.condition else ""
        return f"preference: new records default to {view.ai_use}{until}"
    if view.kind == "volume-cap":
        return f"volume cap: {view.monthly_records} records a month"
    if view.kind == "eval-only":
        return "new records are evaluation-only"
    return "quality freeze"


def _name(coop: str, name: str | None) -> str:
    return f"{name} ({coop[:16]})" if name else coop[:16]


def _line(view: Any) -> str:
    signed = len(view.signers)
    return f"{view.id[:16]}  {view.status:<9}  {signed} of {view.threshold} signed  {_what(view)}"


def _show(view: Any) -> None:
    print(f"joint action {view.id}")
    print(f"  {_what(view)}; status {view.status}")
    print(f"  reason: {view.reason}")
    print(f"  proposed by {_name(view.proposer, view.proposer_name)} at {when(view.created_at)}")
    end = f"ends {when(view.ends_at)}" if view.ends_at is not None else "no end date"
    review = f", review {when(view.review_at)}" if view.review_at is not None else ""
    print(f"  starts {when(view.starts_at)}, {end}{review}")
    print(f"  threshold {view.threshold} of {len(view.coops)}:")
    for coop in view.coops:
        mark = "signed" if coop["signed"] else "not signed"
        us = " (us)" if coop["self"] else ""
        print(f"    {_name(coop['id'], coop['name'])}{us}: {mark}")
    for s in view.signers:
        print(f"  signed by {_name(s.coop, s.name)} at {when(s.at)} ({s.via})")
    for s in view.enders:
        print(f"  end signed by {_name(s.coop, s.name)} at {when(s.at)} ({s.via})")
    print(f"  here: {view.here}")
    print(f"  {view.note}")


_KINDS: Final = ("--freeze", "--embargo", "--eval-only", "--preference AI_USE", "--volume-cap N")


def _taken(result: Any, as_json: bool, quiet: bool, verb: str) -> None:
    if as_json:
        print_json(result)
        return
    if quiet:
        return
    view, proposal = result.action, result.proposal
    if proposal is not None:
        head = f"proposed {view.id}; " if verb == "proposed" else ""
        print(f"{head}put to the members' vote: proposal {proposal.id} (closes {when(proposal.closes_at)})")
    elif verb == "signed the end of" and view.status != "ended":
        ends, needed = len(view.enders), view.threshold
        more = needed - ends
        print(
            f"{verb} {view.id}: {ends} of {needed} ends signed;"
            f" it ends once {more} more {'signer signs' if more == 1 else 'signers sign'} its end"
        )
    else:
        print(f"{verb} {view.id}: {view.status}; {view.here}")


@click.group("joint")
def joint() -> None:
    """Joint actions with other co-ops: propose, sign, end, list, show."""


@joint.command("propose")
@data_dir_argument
@click.option("--freeze", is_flag=True, help="a quality freeze: nothing flows, no release cut")
@click.option("--embargo", is_flag=True, help="an embargo (the whole co-op, or --tag/--language/--license)")
@click.option("--eval-only", is_flag=True, help="new records are for evaluation only")
@click.option("--preference", metavar="AI_USE", help="new records default to AI_USE, e.g. 'train-ai=n'")
@click.option(
    "--volume-cap", type=click.IntRange(0), metavar="N", help="at most N records a month in releases"
)
@click.option("--tag", "tags", multiple=True, help="embargo records with this tag (repeatable)")
@click.option("--language", "languages", multiple=True, help="embargo records in this language (repeatable)")
@click.option("--license", "licenses", multiple=True, help="embargo records under this licence (repeatable)")
@click.option("--condition", help="with --preference: until when, in plain words")
@click.option("--reason", required=True, help="why, for the co-ops that will decide")
@click.option("--start", metavar="DATE", help="when it starts (ISO date or time; default now)")
@click.option("--until", metavar="DATE", help="when it ends (ISO date or time)")
@click.option("--review", metavar="DATE", help="when the co-ops review it (ISO date or time)")
@click.option("--threshold", type=int, required=True, help="K: how many of the named co-ops must sign")
@click.option(
    "--coop",
    "coops",
    multiple=True,
    required=True,
    metavar="ID",
    help="a co-op's node id (repeatable; this co-op is added)",
)
@output_options
def propose(
    dir: Path,
    freeze: bool,
    embargo: bool,
    eval_only: bool,
    preference: str | None,
    volume_cap: int | None,
    tags: tuple[str, ...],
    languages: tuple[str, ...],
    licenses: tuple[str, ...],
    condition: str | None,
    reason: str,
    start: str | None,
    until: str | None,
    review: str | None,
    threshold: int,
    coops: tuple[str, ...],
    as_json: bool,
    quiet: bool,
) -> int:
    """Propose a joint action to the co-ops named; this co-op signs it as its rules say."""
    from coop.node.cli.exits import UsageError

    given = (freeze, embargo, eval_only, preference is not None, volume_cap is not None)
    kinds = [kind for kind, on in zip(_KIND_VALUES, given, strict=True) if on]
    if len(kinds) != 1:
        named = [option for option, on in zip(_KINDS, given, strict=True) if on]
        also = f" (got {' and '.join(o.split()[0] for o in named)})" if named else ""
        raise UsageError(f"choose one of {', '.join(_KINDS)}{also}", field="--freeze")
    if until is None and review is None:
        raise UsageError("give --until DATE or --review DATE (or both)", field="--until")
    if (tags or languages or licenses) and kinds[0] != "embargo":
        raise UsageError("--tag, --language and --license go with --embargo", field="--tag")
    import msgspec

    from coop.node.errors import InputError
    from coop.node.http.joint import ProposeRequest, acting, own_coop, propose_arguments, taken

    try:
        request = msgspec.convert(
            {
                "kind": kinds[0],
                "reason": reason,
                "threshold": threshold,
                "coops": list(coops),
                "tags": list(tags),
                "languages": list(languages),
                "licenses": list(licenses),
                "ai_use": preference,
                "condition": condition,
                "monthly_records": volume_cap,
                "starts_at": start,
                "ends_at": until,
                "review_at": review,
            },
            ProposeRequest,
        )
    except msgspec.ValidationError as exc:
        option = _option_of(str(exc))
        message = str(exc).split(" - at ")[0]
        if option == "--license":
            message = _not_a_licence(licenses)
        raise InputError(message, field=option) from None
    with open_node(dir) as node:
        own = own_coop(node)
        try:
            arguments = propose_arguments(request, own=own[0], now=node.now())
            keeper = node.federation.joint
            done = acting(lambda: keeper.propose(**arguments, actor=_actor()))
        except InputError as exc:
            raise InputError(exc.message, field=_OPTIONS.get(exc.field or "", exc.field)) from None
        result = taken(node.federation, done, own=own)
    _taken(result, as_json, quiet, "proposed")
    return 0


_KIND_VALUES: Final = ("freeze", "embargo", "eval-only", "preference", "volume-cap")


def _not_a_licence(licenses: tuple[str, ...]) -> str:
    from coop.governance import License

    known = [lic.value for lic in License]
    bad = next((lic for lic in licenses if lic not in known), licenses[0] if licenses else "")
    shown = " ".join(bad.split())[:40] or "''"
    return f"{shown} is not a licence this node knows: one of {', '.join(known)}"


# A refused field as the option that gave it.
_OPTIONS = {
    "kind": "--freeze",
    "reason": "--reason",
    "threshold": "--threshold",
    "coops": "--coop",
    "tags": "--tag",
    "languages": "--language",
    "licenses": "--license",
    "ai_use": "--preference",
    "condition": "--condition",
    "monthly_records": "--volume-cap",
    "starts_at": "--start",
    "ends_at": "--until",
    "review_at": "--review",
}


def _option_of(message: str) -> str | None:
    for name, option in _OPTIONS.items():
        if f"$.{name}" in message:
            return option
    return None


@joint.command("sign")
@data_dir_argument
@click.argument("action", metavar="ACTION")
@output_options
def sign(dir: Path, action: str, as_json: bool, quiet: bool) -> int:
    """This co-op signs ACTION (its id, or 8+ hex digits of it): now, or by a vote if the rules say."""
    from coop.node.http.joint import acting, own_coop, taken

    with open_node(dir) as node:
        keeper = node.federation.joint
        done = acting(lambda: keeper.sign(action, actor=_actor()), action=action)
        result = taken(node.federation, done, own=own_coop(node))
    _taken(result, as_json, quiet, "signed")
    return 0


@joint.command("end")
@data_dir_argument
@click.argument("action", metavar="ACTION")
@output_options
def end(dir: Path, action: str, as_json: bool, quiet: bool) -> int:
    """This co-op (a signer) signs ACTION's end; it ends once K of its signers have."""
    from coop.node.http.joint import acting, own_coop, taken

    with open_node(dir) as node:
        keeper = node.federation.joint
        done = acting(lambda: keeper.end(action, actor=_actor()), action=action)
        result = taken(node.federation, done, own=own_coop(node))
    _taken(result, as_json, quiet, "signed the end of")
    return 0


@joint.command("list")
@data_dir_argument
@output_options
def list_(dir: Path, as_json: bool, quiet: bool) -> int:
    """Every joint action held here (newest first): status, signatures, whether this co-op is bound."""
    from coop.node.http.joint import actions_answer, own_coop

    with open_node(dir) as node:
        answer = actions_answer(node.federation, own=own_coop(node))
    if as_json:
        print_json(answer)
        return 0
    if not answer.actions:
        print("no joint action yet: coop joint propose DIR ... (see coop joint propose --help)")
        return 0
    for view in answer.actions:
        print(f"{_line(view)}  [{view.here}]")
    print(answer.note)
    return 0


@joint.command("show")
@data_dir_argument
@click.argument("action", metavar="ACTION")
@output_options
def show(dir: Path, action: str, as_json: bool, quiet: bool) -> int:
    """One joint action: what it holds, who signed and when, whether this co-op is bound."""
    from coop.node.http.joint import one_answer, own_coop

    with open_node(dir) as node:
        view = one_answer(node.federation, action, own=own_coop(node))
    if as_json:
        print_json(view)
    else:
        _show(view)
    return 0


COMMANDS: list[click.Command] = [joint]
