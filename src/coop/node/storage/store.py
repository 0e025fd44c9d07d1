"""The node's SQLite store: one writer (group commit), per-thread readers, typed results.

Write operations are plain functions of a connection, run by the
:class:`~coop.node.storage.writer.Writer`; reads use a per-thread read-only
connection.  Nothing here returns a cursor.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from coop.governance import ANONYMOUS_PREFIX, contributor_hash
from coop.node.errors import InputError, NotFoundError, StorageError
from coop.node.members.accounts import Integration, Member, Role, hash_secret, new_secret
from coop.node.members.attribution import (
    check_member_name,
    claim_member_name,
    clean_display_name,
    default_pseudonym,
    is_reserved,
)
from coop.node.storage.migrations import migrate
from coop.node.storage.writer import Writer, connect

__all__ = [
    "Store",
    "add_integration",
    "add_member",
    "ensure_external_member",
    "integration_by_key",
    "member_by_name",
    "member_by_token",
    "member_from_row",
    "next_tick",
]

T = TypeVar("T")


class Store:
    """Connections to one node database."""

    def __init__(self, path: Path, *, synchronous: str = "full") -> None:
        self.path = path
        setup = connect(path, synchronous=synchronous)
        try:
            migrate(setup)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot prepare database {path}: {exc}") from exc
        finally:
            setup.close()
        self.writer = Writer(path, synchronous=synchronous)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def reader(self) -> sqlite3.Connection:
        """This thread's read connection (sees every committed write)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._readers.append(conn)
        return conn

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self.reader())
        except sqlite3.Error as exc:
            raise StorageError(f"database read failed: {exc}") from exc

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self.writer.call(_translating(fn))

    async def awrite(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.writer.run(_translating(fn))

    def close(self) -> None:
        # Readers first: the writer, closing last, checkpoints the WAL into the database.
        with self._lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        self.writer.close()


def _translating(fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    def run(conn: sqlite3.Connection) -> T:
        try:
            return fn(conn)
        except sqlite3.IntegrityError as exc:
            raise StorageError(f"constraint failed: {exc}") from exc

    return run


def next_tick(conn: sqlite3.Connection) -> int:
    """A database-wide counter of changes to what a release may contain."""
    (n,) = conn.execute("UPDATE ticks SET n = n + 1 WHERE id = 1 RETURNING n").fetchone()
    return int(n)


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
