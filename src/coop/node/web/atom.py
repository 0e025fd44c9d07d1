"""The co-op's Atom feed (RFC 4287): its releases and the records its admins highlight.

``GET /feed.atom`` on the node (:mod:`coop.node.web.feed`) and ``feed.atom`` in the static
site carry one entry per release (newest first; its id stays the same across revisions, its
``updated`` moves with each) and one per highlighted record, at most :data:`MAX_ENTRIES` in
all.  A highlighted record is shown only as :func:`~coop.node.channels.previews.previews`
allows (the catalogue's title, label, licence and link; never while withdrawn, embargoed,
gated, held by a joint action, refused to AI use or kept out by its member), so it vanishes
from the feed the moment it may not be announced.

:func:`render` is pure (a :class:`Feed` in, UTF-8 bytes out, the same bytes for the same
feed); :func:`feed_of` reads the node for it.  Ids (:func:`atom_id`) are ``urn:uuid:`` URIs,
UUIDv5 of the node id (its first key, kept across ``coop peers rotate``) and the thing named
(``releases/vN``, ``records/<uid>``): renaming the co-op or moving ``node.public_url`` must not
make every reader see every entry again.  The node's feed and the static site's name an entry
alike.  No web framework here: the static site builds the feed without loading the web app.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Final

import msgspec

from coop.node.channels.previews import Hidden, Preview, hidden_now, previews, refuses_nothing
from coop.node.contributions.repository import get_contribution
from coop.node.contributions.submission import ContributionState
from coop.node.members.repository import announces
from coop.node.releases.channel_reads import first_audit_at, preview_rows, revised_at
from coop.node.releases.highlights import highlighted
from coop.node.releases.model import ReleaseSummary
from coop.node.releases.repository import list_releases
from coop.node.runtime import Node

__all__ = [
    "FEED_CACHE_CONTROL",
    "FEED_PATH",
    "MAX_ENTRIES",
    "MEDIA_TYPE",
    "Feed",
    "FeedEntry",
    "atom_id",
    "feed_of",
    "not_shown_because",
    "record_entry",
    "release_entry",
    "render",
]

ATOM: Final = "http://www.w3.org/2005/Atom"
FEED_PATH: Final = "/feed.atom"
MEDIA_TYPE: Final = "application/atom+xml; charset=utf-8"
# Keep, but revalidate (by the ETag) before each use: an entry hidden now must not linger in caches.
FEED_CACHE_CONTROL: Final = "no-cache"
MAX_ENTRIES: Final = 50
# What XML 1.0 cannot carry at all (control characters, lone surrogates, U+FFFE/FFFF): a
# title holding one would make the whole feed unreadable, so it is dropped, never escaped.
# The namespace of every node's feed ids (a constant: changing it would renumber every entry).
_ID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "urn:coop:atom-feed")
_NOT_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class FeedEntry(msgspec.Struct, frozen=True, kw_only=True):
    id: str  # a urn:uuid: URI (atom_id), stable for the thing it names
    title: str
    updated: int  # unix seconds
    link: str
    summary: str
    published: int | None = None


class Feed(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    title: str
    author: str
    updated: int
    self_link: str
    home_link: str
    entries: tuple[FeedEntry, ...] = ()


def atom_id(node_id: str, path: str) -> str:
    """``urn:uuid:`` + UUIDv5 of the node id and ``path`` (``feed``, ``releases/v1``,
    ``records/<uid>``): the same for ever for that node and thing, whatever the co-op's name
    or URL, and not a raw id."""
    node = uuid.uuid5(_ID_NAMESPACE, node_id)
    return f"urn:uuid:{uuid.uuid5(node, path)}"


def _stamp(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


def _text(parent: ET.Element, name: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, name)
    element.text = _clean(text)
    return element


def _link(parent: ET.Element, href: str, *, rel: str, media_type: str | None = None) -> None:
    attributes = {"href": _clean(href), "rel": rel}
    if media_type is not None:
        attributes["type"] = media_type
    ET.SubElement(parent, "link", attributes)


def render(feed: Feed) -> bytes:
    """The feed as an Atom document (UTF-8, with its XML declaration); text is escaped by the
    serializer and stripped of what XML cannot hold, so no title can break out of its element."""
    # Unprefixed names under a default namespace declared on the root, as feeds are usually written.
    root = ET.Element("feed", {"xmlns": ATOM})
    _text(root, "id", feed.id)
    _text(root, "title", feed.title)
    _text(root, "updated", _stamp(feed.updated))
    author = ET.SubElement(root, "author")
    _text(author, "name", feed.author)
    _link(root, feed.self_link, rel="self", media_type="application/atom+xml")
    _link(root, feed.home_link, rel="alternate", media_type="text/html")
    for item in feed.entries:
        entry = ET.SubElement(root, "entry")
        _text(entry, "id", item.id)
        _text(entry, "title", item.title)
        _text(entry, "updated", _stamp(item.updated))
        if item.published is not None:
            _text(entry, "published", _stamp(item.published))
        _link(entry, item.link, rel="alternate", media_type="text/html")
        _text(entry, "summary", item.summary)
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body + b"\n"


def _records(n: int) -> str:
    return f"{n:,} record{'' if n == 1 else 's'}"


def release_entry(
    release: ReleaseSummary, *, node_id: str, coop: str, base_url: str, updated: int
) -> FeedEntry:
    """A release: named by its version (the same id whatever its revision)."""
    licences: dict[str, int] = {}
    for bucket in release.buckets:
        licences[bucket.license.value] = licences.get(bucket.license.value, 0) + bucket.records
    listed = ", ".join(f"{name} ({_records(n)})" for name, n in sorted(licences.items()))
    summary = f"{_records(release.records)}" + (f"; licences: {listed}." if listed else ".")
    if release.revision > 1:
        summary += f" Revision {release.revision}: withdrawn records taken out."
    return FeedEntry(
        id=atom_id(node_id, f"releases/{release.name}"),
        title=f"{coop} released {release.name}: {_records(release.records)}",
        updated=max(updated, release.created_at),
        published=release.created_at,
        link=f"{base_url}/datasets/{release.name}",
        summary=summary,
    )


def record_entry(preview: Preview, *, node_id: str, highlighted_at: int) -> FeedEntry:
    """A highlighted record: no more than its preview shows."""
    return FeedEntry(
        id=atom_id(node_id, f"records/{preview.uid}"),
        title=preview.title or f"A {preview.label} chat",
        updated=highlighted_at,
        link=preview.url,
        summary=f"A {preview.label} chat, {preview.license}, released in v{preview.version}.",
    )


def not_shown_because(conn: sqlite3.Connection, *, uid: str, hidden: Hidden) -> str | None:
    """Why the feed leaves the highlighted record ``uid`` out now (``None``: it carries it).

    The answer of :func:`previews` itself, explained: the first reason that holds, the
    member's and the record's own choices before what the co-op's settings hide for a while.
    """
    if previews(conn, base_url="", hidden=hidden, uids=[uid], limit=1):
        return None
    found = get_contribution(conn, uid)
    if found is None or found.view.state is not ContributionState.RELEASED:
        return "the record is not released (withdrawn, or not on this node)"
    if not announces(conn, found.member_id):
        return "its member does not let the co-op announce their records"
    if not refuses_nothing(found.view.ai_use):
        return "its AI-use preference refuses a use"
    if found.view.license in hidden.gated:
        return f"its licence {found.view.license} is gated"
    if not any(preview_rows(conn, embargo=hidden.embargo, gated=(), uids=[uid])):
        return "the embargo hides it"
    return "the public pages hide it now (a joint action)"


def feed_of(node: Node, *, base_url: str) -> Feed:
    """The node's feed now; links start with ``base_url`` (empty: site-relative links)."""
    base = base_url.rstrip("/")
    coop = node.config.node.name
    node_id = node.identity.node_id
    hidden = hidden_now(node)  # outside the read: it asks the settings and the federation

    def read(conn: sqlite3.Connection) -> tuple[list[ReleaseSummary], dict[str, int], int, list[FeedEntry]]:
        chosen = highlighted(conn, limit=MAX_ENTRIES)
        shown = previews(conn, base_url=base, hidden=hidden, uids=list(chosen), limit=MAX_ENTRIES)
        records = [record_entry(p, node_id=node_id, highlighted_at=chosen[p.uid]) for p in shown]
        return list_releases(conn), revised_at(conn), first_audit_at(conn), records

    releases, revised, since, records = node.store.read(read)
    entries = [
        release_entry(r, node_id=node_id, coop=coop, base_url=base, updated=revised.get(r.name, 0))
        for r in releases
    ] + records
    entries.sort(key=lambda e: (e.updated, e.id), reverse=True)
    entries = entries[:MAX_ENTRIES]
    return Feed(
        id=atom_id(node_id, "feed"),
        title=f"{coop}: releases and highlighted chats",
        author=coop,
        updated=max((e.updated for e in entries), default=since),
        self_link=f"{base}{FEED_PATH}",
        home_link=f"{base}/datasets",
        entries=tuple(entries),
    )
