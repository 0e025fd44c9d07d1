"""Members and integrations in the store: add them, find them by credential, revoke, list.

Secrets (member tokens, integration keys) are shown once and stored as their SHA-256
(:mod:`coop.node.members.accounts`).  The list ``coop member list`` reads carries no
internal id, e-mail, token, session id or contributor hash: only the public handle, the
role, how and when the member joined, and the counts an admin needs to decide on a
revocation.
"""

from __future__ import annotations

import secrets
import sqlite3

import msgspec

from coop.governance import ANONYMOUS_PREFIX, contributor_hash
from coop.node.errors import InputError, NotFoundError
from coop.node.members.accounts import Integration, Member, Role, hash_secret, new_secret
from coop.node.members.attribution import (
    check_member_name,
    claim_member_name,
    clean_display_name,
    default_pseudonym,
    is_reserved,
)

__all__ = [
    "MemberSummary",
    "add_integration",
    "add_member",
    "announces",
    "choose_announce",
    "ensure_external_member",
    "integration_by_key",
    "list_members",
    "member_by_name",
    "member_by_token",
    "member_credentials",
    "member_from_row",
    "revoke_integration",
    "set_announce",
]


_MEMBER_COLUMNS = "id, name, role, provider, contributor_hash"


def member_from_row(row: tuple[int, str, str, str, str]) -> Member:
    return Member(id=row[0], name=row[1], role=Role(row[2]), provider=row[3], contributor_hash=row[4])


def add_member(
    conn: sqlite3.Connection, *, name: str, role: Role, salt: bytes, now: int
) -> tuple[Member, str]:
    """A local member with a new bearer token; the token is returned once and stored hashed."""
    name = name.strip()
    if not name or len(name) > 64 or not name.isprintable():
        raise InputError("a member name must be 1 to 64 printable characters", field="name")
    if name.lower().startswith(ANONYMOUS_PREFIX):
        raise InputError(f"a member name may not start with {ANONYMOUS_PREFIX!r}", field="name")
    if conn.execute("SELECT 1 FROM members WHERE name = ?", (name,)).fetchone():
        raise InputError(f"a member named {name!r} already exists", field="name")
    check_member_name(conn, name)
    token = new_secret("coop_")
    external_id = new_secret("local_")
    chash = contributor_hash(salt, "local", external_id)
    cur = conn.execute(
        "INSERT INTO members (name, role, provider, external_id, token_hash, contributor_hash, created_at)"
        " VALUES (?, ?, 'local', ?, ?, ?, ?)",
        (name, role.value, external_id, hash_secret(token), chash, now),
    )
    member_id = cur.lastrowid
    assert member_id is not None
    claim_member_name(conn, member_id=member_id, name=name, now=now)
    default_pseudonym(conn, member_id, now=now)
    return Member(id=member_id, name=name, role=role, provider="local", contributor_hash=chash), token


def ensure_external_member(
    conn: sqlite3.Connection,
    *,
    provider: str,
    external_id: str,
    name: str | None,
    email: str | None,
    salt: bytes,
    now: int,
) -> Member:
    """The member for a user of an integration (Open WebUI), created on first contribution.

    The raw id and e-mail stay in this table; everything else sees the HMAC.  The display
    name is only a suggestion: cleaned (:func:`~coop.node.members.attribution.clean_display_name`),
    then the first handle free of every claimed name in the fold of names (``Ada``,
    ``Ada-2``, ...), so no integration user can pass for another member.
    """
    row = conn.execute(
        f"SELECT {_MEMBER_COLUMNS} FROM members WHERE provider = ? AND external_id = ?",
        (provider, external_id),
    ).fetchone()
    if row:
        return member_from_row(row)
    chash = contributor_hash(salt, provider, external_id)
    # A handle is never derived from the hash: it would tie the member's records together.
    base = clean_display_name(name) or f"{provider}-{secrets.token_hex(4)}"
    if is_reserved(base):
        base = f"{provider}-{base}"
    handle = base
    suffix = 1
    while not _free_handle(conn, handle):
        suffix += 1
        handle = f"{base}-{suffix}"
        if suffix > 1000:  # a crowd of look-alikes: a neutral random handle instead
            base = handle = f"{provider}-{secrets.token_hex(4)}"
            suffix = 1
    cur = conn.execute(
        "INSERT INTO members (name, role, provider, external_id, email, contributor_hash, created_at)"
        " VALUES (?, 'member', ?, ?, ?, ?, ?)",
        (handle, provider, external_id, email, chash, now),
    )
    assert cur.lastrowid is not None
    claim_member_name(conn, member_id=cur.lastrowid, name=handle, now=now)
    default_pseudonym(conn, cur.lastrowid, now=now)
    return Member(id=cur.lastrowid, name=handle, role=Role.MEMBER, provider=provider, contributor_hash=chash)


def _free_handle(conn: sqlite3.Connection, handle: str) -> bool:
    """No member has this handle, and it folds to no name claimed (handle or pseudonym)."""
    if conn.execute("SELECT 1 FROM members WHERE name = ?", (handle,)).fetchone():
        return False
    try:
        check_member_name(conn, handle)
    except InputError:
        return False
    return True


def member_by_token(conn: sqlite3.Connection, token: str) -> Member | None:
    row = conn.execute(
        f"SELECT {_MEMBER_COLUMNS} FROM members WHERE token_hash = ?", (hash_secret(token),)
    ).fetchone()
    return None if row is None else member_from_row(row)


def member_by_name(conn: sqlite3.Connection, name: str) -> Member | None:
    row = conn.execute(f"SELECT {_MEMBER_COLUMNS} FROM members WHERE name = ?", (name,)).fetchone()
    return None if row is None else member_from_row(row)


def add_integration(conn: sqlite3.Connection, *, name: str, now: int) -> tuple[Integration, str]:
    name = name.strip()
    if not name or len(name) > 64:
        raise InputError("an integration name must be 1 to 64 characters", field="name")
    if conn.execute("SELECT 1 FROM integrations WHERE name = ?", (name,)).fetchone():
        raise InputError(f"an integration named {name!r} already exists", field="name")
    key = new_secret("coopkey_")
    cur = conn.execute(
        "INSERT INTO integrations (name, key_hash, created_at) VALUES (?, ?, ?)",
        (name, hash_secret(key), now),
    )
    assert cur.lastrowid is not None
    return Integration(id=cur.lastrowid, name=name), key


def member_credentials(conn: sqlite3.Connection, *, name: str, reissue: bool) -> str | None:
    """Revoke a local member's token and web sessions; with ``reissue``, return a new token.

    A running node honours this within its credential cache's lifetime (30 s).
    """
    row = conn.execute("SELECT id, provider FROM members WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise NotFoundError(f"no member named {name!r}", field="NAME")
    member_id, provider = row
    if provider != "local":
        raise InputError(
            f"{name!r} signs in through {provider}, not with a token: revoke the integration instead",
            field="NAME",
        )
    token = new_secret("coop_") if reissue else None
    conn.execute(
        "UPDATE members SET token_hash = ? WHERE id = ?",
        (None if token is None else hash_secret(token), member_id),
    )
    conn.execute("DELETE FROM web_sessions WHERE member_id = ?", (member_id,))
    return token


def revoke_integration(conn: sqlite3.Connection, *, name: str) -> None:
    """Delete an integration: its API key stops working (within the 30 s credential cache)."""
    if conn.execute("DELETE FROM integrations WHERE name = ?", (name,)).rowcount == 0:
        raise NotFoundError(f"no integration named {name!r}", field="NAME")


def integration_by_key(conn: sqlite3.Connection, key: str) -> Integration | None:
    row = conn.execute("SELECT id, name FROM integrations WHERE key_hash = ?", (hash_secret(key),)).fetchone()
    return None if row is None else Integration(id=row[0], name=row[1])


class MemberSummary(msgspec.Struct, frozen=True):
    """A member as ``coop member list`` shows it: never a token, only how many it has."""

    name: str
    role: Role
    provider: str  # "local", or the integration that brought the member (e.g. "openwebui")
    joined: int  # Unix time the member was added
    tokens: int  # 1 while the member has a bearer token, 0 once revoked (or for integration users)
    web_sessions: int  # web sign-ins not yet expired


def list_members(conn: sqlite3.Connection, *, now: int) -> list[MemberSummary]:
    """Every member, oldest first, with their active credentials counted at ``now``."""
    rows = conn.execute(
        "SELECT m.name, m.role, m.provider, m.created_at, m.token_hash IS NOT NULL,"
        " (SELECT count(*) FROM web_sessions s WHERE s.member_id = m.id AND s.expires_at >= ?)"
        " FROM members m ORDER BY m.created_at, m.id",
        (now,),
    ).fetchall()
    return [
        MemberSummary(
            name=str(name),
            role=Role(role),
            provider=str(provider),
            joined=int(joined),
            tokens=int(token),
            web_sessions=int(sessions),
        )
        for name, role, provider, joined, token, sessions in rows
    ]


def members_without_pseudonym(conn: sqlite3.Connection) -> bool:
    """Whether any member predates names and pseudonyms (an upgrade settles them once)."""
    return conn.execute("SELECT 1 FROM members WHERE pseudonym IS NULL LIMIT 1").fetchone() is not None


def stored_pseudonym(conn: sqlite3.Connection, member_id: int) -> str | None:
    """The member's default pseudonym, if one was chosen."""
    found = conn.execute("SELECT pseudonym FROM members WHERE id = ?", (member_id,)).fetchone()
    return str(found[0]) if found is not None and found[0] else None


def announces(conn: sqlite3.Connection, member_id: int) -> bool:
    """Whether the member lets the co-op announce their released records (microblog, feed)."""
    found = conn.execute("SELECT announce FROM members WHERE id = ?", (member_id,)).fetchone()
    return found is None or bool(found[0])


def set_announce(conn: sqlite3.Connection, member_id: int, announce: bool) -> None:
    """The member's choice: announce their released records or not (previews read it each time:
    no new post names one of theirs, and posts already out are deleted at the next publish)."""
    conn.execute("UPDATE members SET announce = ? WHERE id = ?", (int(announce), member_id))


def choose_announce(conn: sqlite3.Connection, member_id: int, announce: bool | None) -> bool:
    """Set the choice when ``announce`` is given; the choice as it stands now."""
    if announce is not None:
        set_announce(conn, member_id, announce)
    return announces(conn, member_id)
