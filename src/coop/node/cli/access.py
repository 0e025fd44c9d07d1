"""Gated access as the local admin: list requests, approve, refuse or revoke them, read the register."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from coop.node.cli.options import LOCAL_ADMIN, data_dir_argument, open_node, output_options
from coop.node.cli.output import print_json, when

__all__ = ["COMMANDS"]

# Bounded: a 30-digit number would reach SQLite as an OverflowError (2^53-1: MAX_SAFE_INTEGER).
_REQUEST = click.argument("request", metavar="REQUEST", type=click.IntRange(1, 2**53 - 1))


def _actor() -> Any:
    from coop.node.collective.settings import Actor

    return Actor(LOCAL_ADMIN, admin=True)


def history(view: Any) -> str:
    """Who decided and when: "approved by X at T; revoked by Y at T2" (empty while undecided)."""
    parts = []
    if view.decided_by is not None:
        verb = "refused" if view.state == "refused" else "approved"
        parts.append(f"{verb} by {view.decided_by} at {when(view.decided_at)}")
    if view.revoked_at is not None:
        parts.append(f"revoked by {view.revoked_by or 'an admin'} at {when(view.revoked_at)}")
    return "; ".join(parts)


def _line(view: Any) -> str:
    state = str(view.state)
    if view.proposal_id is not None:
        state += f" (proposal {view.proposal_id})"
    if view.expires_at is not None and view.revoked_at is None:
        state += f" until {when(view.expires_at)}"
    decided = history(view)
    return (
        f"#{view.id} {state}: {view.who} ({view.member}) asks for {', '.join(view.buckets)}"
        f" for {view.model}{' (open weights)' if view.open_weights else ''}"
        f" - {view.purpose} [asked {when(view.requested_at)}{'; ' + decided if decided else ''}]"
    )


def _decided(view: Any, decision: str) -> str:
    """One line saying what the decision did."""
    access = f"{view.who}'s access to {', '.join(view.buckets)}"
    if decision == "revoke":
        return f"request {view.id} revoked: {access} ended"
    if decision == "refuse":
        return f"request {view.id} refused: {view.who} gets no access to {', '.join(view.buckets)}"
    return f"request {view.id} approved: {access} until {when(view.expires_at)}"


@click.group("access")
def access() -> None:
    """Gated buckets: model builders' requests for access, grants and the download register."""


@access.command("list")
@data_dir_argument
@click.option("--state", "only", metavar="STATE", help="only requests in this state (e.g. pending, approved)")
@output_options
def access_list(dir: Path, only: str | None, as_json: bool, quiet: bool) -> int:
    """Every request for gated access, newest first."""
    with open_node(dir) as node:
        views = node.access.requests(member=None)
    if only:
        views = [v for v in views if str(v.state) == only]
    if as_json:
        print_json(views)
    elif not views:
        print("no access request")
    else:
        for view in views:
            print(_line(view))
    return 0


def _decide(dir: Path, request: int, decision: str, as_json: bool) -> int:
    with open_node(dir) as node:
        desk = node.access
        proposal = None
        if decision == "approve":
            view, proposal = desk.approve(request, actor=_actor())
        elif decision == "refuse":
            view = desk.refuse(request, actor=_actor())
        else:
            view = desk.revoke(request, actor=_actor())
    if as_json:
        print_json({"request": view, "proposal": proposal})
    elif proposal is not None:
        print(
            f"request {view.id}: the co-op's rules ask for a vote: proposal {proposal.id} is open"
            f" until {when(proposal.closes_at)}: the members decide"
        )
    else:
        print(_decided(view, decision))
    return 0


@access.command("approve")
@data_dir_argument
@_REQUEST
@output_options
def access_approve(dir: Path, request: int, as_json: bool, quiet: bool) -> int:
    """Grant REQUEST now, or open the vote when the co-op's access rule asks for one."""
    return _decide(dir, request, "approve", as_json)


@access.command("refuse")
@data_dir_argument
@_REQUEST
@output_options
def access_refuse(dir: Path, request: int, as_json: bool, quiet: bool) -> int:
    """Refuse REQUEST."""
    return _decide(dir, request, "refuse", as_json)


@access.command("revoke")
@data_dir_argument
@_REQUEST
@output_options
def access_revoke(dir: Path, request: int, as_json: bool, quiet: bool) -> int:
    """End the grant of REQUEST now: its signed URLs stop working too."""
    return _decide(dir, request, "revoke", as_json)


@access.command("register")
@data_dir_argument
@output_options
def access_register(dir: Path, as_json: bool, quiet: bool) -> int:
    """Every download of a gated file: who, what, when."""
    with open_node(dir) as node:
        rows = node.access.register(member=None)
    if as_json:
        print_json(rows)
    elif not rows:
        print("no download yet")
    else:
        for row in rows:
            print(
                f"{when(row.at)} {row.who} grant #{row.request_id} {row.release}/{row.path} {row.bytes} bytes"
            )
    return 0


COMMANDS = [access]
