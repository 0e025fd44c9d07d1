"""``coop member …`` and ``coop integration …``: the local admin manages who may contribute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from coop.node.cli.options import LOCAL_ADMIN, data_dir_argument, open_node, output_options
from coop.node.cli.output import print_json, when

__all__ = ["COMMANDS"]

_NAME = click.argument("name", metavar="NAME")


@click.group("member")
def member() -> None:
    """Manage members: add, list, revoke, token."""


@member.command("add")
@data_dir_argument
@_NAME
@click.option("--admin", is_flag=True, help="make the member an admin (same as --role admin)")
@click.option(
    "--role",
    "role_name",
    type=click.Choice(["member", "admin", "builder"]),
    default=None,
    help="member (default), admin, or builder: a model builder's account, which may request gated"
    " access but never votes nor contributes",
)
@output_options
def member_add(dir: Path, name: str, admin: bool, role_name: str | None, as_json: bool, quiet: bool) -> int:
    """Add a member NAME; prints their token once, alone on stdout."""
    from coop.node.collective.audit import AuditAction, audit
    from coop.node.members.accounts import Role
    from coop.node.members.repository import add_member

    if admin and role_name not in (None, "admin"):
        raise click.UsageError("--admin and --role " + str(role_name) + " disagree")
    role = Role.ADMIN if admin else Role(role_name or "member")
    with open_node(dir) as node:
        now = node.now()

        def write(conn: Any) -> tuple[Any, str]:
            added, token = add_member(conn, name=name, role=role, salt=node.salt, now=now)
            audit(conn, signer=node.signer, at=now, actor=LOCAL_ADMIN, action=AuditAction.MEMBER_ADD,
                  payload={"name": added.name, "role": added.role.value})  # fmt: skip
            return added, token

        added, token = node.store.write(write)
    if as_json:
        print_json({"name": added.name, "role": added.role, "token": token})
    else:
        print(token)
    return 0


@member.command("list")
@data_dir_argument
@output_options
def member_list(dir: Path, as_json: bool, quiet: bool) -> int:
    """The members: name, role, when they joined, how many tokens and web sessions (never a token)."""
    from coop.node.members.repository import list_members

    with open_node(dir) as node:
        now = node.now()
        members = node.store.read(lambda c: list_members(c, now=now))
    if as_json:
        print_json(members)
        return 0
    if not members:
        print("no members yet: coop member add DIR NAME")
    for m in members:
        print(
            f"{m.name:<24} {m.role.value:<7} joined {when(m.joined)}  {m.tokens} token{'' if m.tokens == 1 else 's'}"
            f", {m.web_sessions} web session{'' if m.web_sessions == 1 else 's'}"
            + ("" if m.provider == "local" else f"  (via {m.provider})")
        )
    return 0


def _credentials(dir: Path, name: str, *, reissue: bool, as_json: bool) -> int:
    from coop.node.collective.audit import AuditAction, audit
    from coop.node.members.repository import member_credentials

    with open_node(dir) as node:
        now = node.now()

        def write(conn: Any) -> str | None:
            token = member_credentials(conn, name=name, reissue=reissue)
            audit(conn, signer=node.signer, at=now, actor=LOCAL_ADMIN,
                  action=AuditAction.MEMBER_TOKEN if reissue else AuditAction.MEMBER_REVOKE, payload={"name": name})  # fmt: skip
            return token

        token = node.store.write(write)
    if as_json:
        print_json({"name": name, "token": token})
    elif token is not None:
        print(token)
    else:
        print(f"revoked {name}'s token and web sessions (a running node stops accepting them within 30 s)")
    return 0


@member.command("revoke")
@data_dir_argument
@_NAME
@output_options
def member_revoke(dir: Path, name: str, as_json: bool, quiet: bool) -> int:
    """Revoke a member's token and web sessions (a lost or leaked token)."""
    return _credentials(dir, name, reissue=False, as_json=as_json)


@member.command("token")
@data_dir_argument
@_NAME
@output_options
def member_token(dir: Path, name: str, as_json: bool, quiet: bool) -> int:
    """Revoke a member's token and print a new one, once."""
    return _credentials(dir, name, reissue=True, as_json=as_json)


@click.group("integration")
def integration() -> None:
    """Manage integrations (Open WebUI)."""


@integration.command("add")
@data_dir_argument
@_NAME
@output_options
def integration_add(dir: Path, name: str, as_json: bool, quiet: bool) -> int:
    """Add an integration NAME; prints its API key once."""
    from coop.node.collective.audit import AuditAction, audit
    from coop.node.members.repository import add_integration

    with open_node(dir) as node:
        now = node.now()

        def write(conn: Any) -> tuple[Any, str]:
            added, key = add_integration(conn, name=name, now=now)
            audit(conn, signer=node.signer, at=now, actor=LOCAL_ADMIN, action=AuditAction.INTEGRATION_ADD,
                  payload={"name": added.name})  # fmt: skip
            return added, key

        added, key = node.store.write(write)
    if as_json:
        print_json({"name": added.name, "key": key})
    else:
        print(key)
    return 0


@integration.command("revoke")
@data_dir_argument
@_NAME
@output_options
def integration_revoke(dir: Path, name: str, as_json: bool, quiet: bool) -> int:
    """Delete an integration: its API key stops working."""
    from coop.node.collective.audit import AuditAction, audit
    from coop.node.members.repository import revoke_integration

    with open_node(dir) as node:
        now = node.now()

        def write(conn: Any) -> None:
            revoke_integration(conn, name=name)
            audit(conn, signer=node.signer, at=now, actor=LOCAL_ADMIN, action=AuditAction.INTEGRATION_REVOKE,
                  payload={"name": name})  # fmt: skip

        node.store.write(write)
    if as_json:
        print_json({"name": name, "revoked": True})
    else:
        print(f"revoked integration {name} (a running node refuses its key within 30 s)")
    return 0


COMMANDS: list[click.Command] = [member, integration]
