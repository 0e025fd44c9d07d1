"""Building nodes and contributions in-process for unit tests (no server)."""

from __future__ import annotations

import itertools
from pathlib import Path

import msgspec

from coop.federation.simulation import record_for as record_for  # record bytes for an entry
from coop.governance import Channel
from coop.node.contributions.repository import insert_contribution
from coop.node.contributions.submission import ContributionRequest
from coop.node.ids import uuid7
from coop.node.members.accounts import Member, Role
from coop.node.members.repository import add_member
from coop.node.runtime import Node
from coop.node.storage.datadir import DataDir

_counter = itertools.count()


def make_node(tmp_path: Path, name: str = "Unit Co-op") -> Node:
    root = tmp_path / f"node-{next(_counter)}"
    DataDir.create(root, name=name)
    return Node(root)


def make_member(node: Node, name: str | None = None, *, admin: bool = False) -> tuple[Member, str]:
    role = Role.ADMIN if admin else Role.MEMBER
    handle = name or f"member-{next(_counter)}"
    return node.store.write(lambda c: add_member(c, name=handle, role=role, salt=node.salt, now=node.now()))


def chat_text(topic: str) -> str:
    return f"User: Tell me about {topic}.\nAssistant: Here is what I know about {topic}: it matters."


def contribute(
    node: Node,
    member: Member,
    *,
    text: str | None = None,
    label: str = "good",
    license: str | None = None,
    scope: str | None = None,
    ai_use: str | None = None,
    **extra: object,
) -> str:
    """Put a text chat in the waiting room as the HTTP endpoint would; return its uid."""
    body: dict[str, object] = {
        "label": label,
        "consent": True,
        "format": "text",
        "content": text or chat_text(f"topic {next(_counter)}"),
        **extra,
    }
    for key, value in (("license", license), ("scope", scope), ("ai_use", ai_use)):
        if value is not None:
            body[key] = value
    request = msgspec.json.decode(msgspec.json.encode(body), type=ContributionRequest)
    submission, _ = node.build_submission(request, channel=Channel.API, member=member)
    uid = uuid7()
    now = node.now()
    node.store.write(
        lambda c: insert_contribution(
            c, uid=uid, member=member, submission=submission, now=now, idempotency=None, client=None
        )
    )
    return uid


def process(node: Node) -> None:
    with node.processor_lock():
        node.process_pending()


def seq_of(node: Node, uid: str) -> int:
    """The contribution ``uid``'s seq."""
    row = node.store.read(
        lambda c: c.execute("SELECT seq FROM contributions WHERE uid = ?", (uid,)).fetchone()
    )
    return int(row[0])


def released_root(
    tmp_path: Path, name: str, *, license: str, count: int = 1, admin: bool = False
) -> tuple[Path, list[str], str | None]:
    """A closed node folder with ``count`` public records of member sam, released and catalogued.

    Returns the folder, the records' uids and, with ``admin``, the token of admin ada.
    """
    node = make_node(tmp_path, name=name)
    try:
        member, _ = make_member(node, "sam")
        token = make_member(node, "ada", admin=True)[1] if admin else None
        uids = [contribute(node, member, scope="public", license=license) for _ in range(count)]
        process(node)
        node.cut_release()
        node.index_catalog()
        return node.data.root, uids, token
    finally:
        node.close()
