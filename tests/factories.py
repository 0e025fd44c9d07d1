"""Building nodes and contributions in-process for unit tests (no server)."""

from __future__ import annotations

import itertools
from pathlib import Path

import msgspec

from coop.federation import Entry
from coop.governance import (
    Attribution,
    AttributionMode,
    Channel,
    Checks,
    Label,
    Message,
    Provenance,
    Record,
    Source,
    canonical_bytes,
    sha256_hex,
)
from coop.governance import Role as Speaker
from coop.node.accounts import Member, Role
from coop.node.contributions import insert_contribution
from coop.node.datadir import DataDir
from coop.node.ids import uuid7
from coop.node.runtime import Node
from coop.node.store import add_member
from coop.node.submission import ContributionRequest

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


def record_for(entry: Entry, text: str = "a chat") -> tuple[Entry, bytes]:
    """Record bytes whose own terms are the entry's, and the entry naming their hash."""
    record = Record(
        uid=entry.uid,
        created_at=0,
        route=Channel.API,
        model=None,
        content=(Message(Speaker.USER, text),),
        label=Label.GOOD,
        tags=entry.tags,
        language=entry.language,
        license=entry.license,
        ai_use=entry.ai_use,
        eval=entry.eval,
        attribution=Attribution(AttributionMode.ANONYMOUS),
        scope=entry.scope,
        provenance=Provenance(Source.NATURAL, False, "messages", Checks({}, "0" * 64)),
    )
    data = canonical_bytes(record)
    return msgspec.structs.replace(entry, hash=sha256_hex(data)), data
