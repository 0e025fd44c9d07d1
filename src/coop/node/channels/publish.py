"""``coop publish``: ship the node's releases to one channel, in order, and remember where they went.

A channel gets every release it does not hold yet, oldest first (git and the
Hub keep one commit and one ``vN`` tag per release; the site is rebuilt once
with all of them).  A release revised after withdrawals (``coop.node.releases.revision``)
goes out again as ``vN-rK``: git as a new commit and tag on top of the previous
revision, the Hub for the release its branch holds (the latest), the site
rebuilt; tags already published never move.  What each channel does is what its
publisher declares (:class:`~coop.node.channels.base.Capabilities`); channels are
found by name in :data:`CHANNELS`.  Each release shipped is one row in
``publications`` (the metrics report each channel's last release and lag from it)
and one entry in the signed audit log; it ships with the statement signed at its
cut.  A dry run ships nothing: it says what would go, and for the Hub writes the
exact commit plan beside the staged files.

A channel in review mode (git with ``channels.git_mode = "review"``) offers
releases instead; ``publish`` first settles the reviews that ended
(:mod:`coop.node.channels.review`) and never offers a closed release again.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import msgspec

from coop.governance import Signer
from coop.node.channels.base import ChannelError, Publisher, ReleaseFolder, release_tag
from coop.node.channels.bluesky import BlueskyPublisher, make_publisher
from coop.node.channels.gated import ACCESS_PATH
from coop.node.channels.git import GitPublisher
from coop.node.channels.hf import HubApi, HubPublisher, hub_api
from coop.node.channels.previews import hidden_now
from coop.node.channels.review import Reviewer, Settled, declined, open_reviews, refresh
from coop.node.channels.site import SiteBuilder, SitePublisher
from coop.node.collective.audit import AuditAction, audit
from coop.node.collective.settings import SettingsView
from coop.node.config import ChannelsConfig, Config
from coop.node.errors import BusyError
from coop.node.releases import channel_records
from coop.node.releases.channel_records import PublicationState
from coop.node.releases.model import ReleaseSummary
from coop.node.releases.publications import Publication, record_publication
from coop.node.releases.repository import list_releases
from coop.node.releases.revision import withheld
from coop.node.releases.statement import stored_statement
from coop.node.storage.datadir import DataDir, Identity
from coop.node.storage.store import Store, current_tick

__all__ = [
    "CHANNELS",
    "Channel",
    "ChannelSetup",
    "PublishReport",
    "PublishingNode",
    "access_url",
    "publish",
    "publisher_for",
    "refresh_reviews",
]

_REVISION_WAIT: Final = 60.0


class PublishingNode(Protocol):
    """What publishing reads of the node (:class:`coop.node.runtime.Node` is one)."""

    data: DataDir
    config: Config
    identity: Identity
    signer: Signer
    store: Store

    def now(self) -> int: ...

    def settings(self) -> SettingsView: ...

    def revise_releases(self, *, wait: float = ...) -> object: ...


@dataclass(frozen=True, kw_only=True)
class ChannelSetup:
    """What a channel's publisher is made from: the node's channel settings and its places."""

    config: ChannelsConfig
    workdir: Path  # DATA/channels: each channel's clones and staging folders, under its own name
    coop: str
    node_id: str
    api: HubApi | None = None  # the Hub client (a test's stand-in); the real one by default
    node_url: str | None = None  # the site's link to the node
    build_site: SiteBuilder | None = None
    # The node itself, for a channel that reads its catalogue and ledger (bluesky): a
    # coop.node.runtime.Node (its federation keeper says what joint actions hide).
    node: Any = None


@dataclass(frozen=True)
class Channel:
    """A channel by name: its configured target (``channels.<name>`` in node.toml) and its publisher."""

    configured: Callable[[ChannelsConfig], str]
    make: Callable[[str, ChannelSetup], Publisher]


def _git(target: str, setup: ChannelSetup) -> Publisher:
    node = setup.node
    recorded: Callable[[], Mapping[str, str]] | None = None
    if node is not None:
        # The commits the node offered for review (stacking works from them, not the clone's refs).
        def recorded() -> Mapping[str, str]:
            return node.store.read(lambda c: open_reviews(c, channel="git", target=target))  # type: ignore[no-any-return]

    return GitPublisher(
        target,
        workdir_root=setup.workdir / "git",
        branch=setup.config.git_branch,
        author=setup.coop,
        email=f"{setup.node_id[:16]}@coop-flywheel.invalid",
        review=setup.config.git_mode == "review",
        recorded=recorded,
    )


def _hf(target: str, setup: ChannelSetup) -> Publisher:
    api = setup.api if setup.api is not None else hub_api()
    return HubPublisher(target, api=api, staging_root=setup.workdir / "hf")


def _site(target: str, setup: ChannelSetup) -> Publisher:
    if setup.build_site is None:
        raise ChannelError("the site channel needs the site's renderer (coop.node.web)", field="channel")
    url = setup.node_url or setup.config.site_node_url or None
    return SitePublisher(target, build=setup.build_site, node_url=url)


def _bluesky(target: str, setup: ChannelSetup) -> Publisher:
    node = setup.node
    if node is None:
        raise ChannelError("the bluesky channel needs the node (coop publish)", field="channel")
    base = setup.node_url or setup.config.site_node_url or node.config.node.public_url
    return make_publisher(
        target,
        node=node,
        service=setup.config.bluesky_service,
        max_posts=setup.config.bluesky_max_posts,
        coop=setup.coop,
        base_url=str(base),
        hidden=hidden_now(node),
        root=node.data.root,
        node_id=setup.node_id,
    )


CHANNELS: Final[Mapping[str, Channel]] = {
    "git": Channel(configured=lambda c: c.git, make=_git),
    "hf": Channel(configured=lambda c: c.hf, make=_hf),
    "site": Channel(configured=lambda c: c.site, make=_site),
    "bluesky": Channel(configured=lambda c: c.bluesky, make=_bluesky),
}


class PublishReport(msgspec.Struct, frozen=True, kw_only=True):
    channel: str
    target: str
    dry_run: bool
    already: list[str]  # releases the target held before
    shipped: list[Publication]  # what this run published (empty on a dry run)
    planned: list[str]  # what would be published (a dry run), or what was
    plan: str | None = None  # the Hub's commit-plan.json of the last planned release
    posts: list[str] = []  # a microblog's dry run: the posts it would send (and delete)
    settled: list[Settled] = []  # review mode: releases whose review ended, seen before publishing
    # A microblog: posts it could not delete (retried at the next publish), and why.
    deletions_failed: int = 0
    deletion_warning: str | None = None


def publisher_for(
    node: PublishingNode,
    channel: str,
    target: str | None,
    *,
    api: HubApi | None = None,
    node_url: str | None = None,
    build_site: SiteBuilder | None = None,
) -> Publisher:
    found = CHANNELS.get(channel)
    if found is None:
        raise ChannelError(
            f"unknown channel {channel!r}: choose one of {', '.join(CHANNELS)}", field="channel"
        )
    where = target or found.configured(node.config.channels)
    if not where:
        raise ChannelError(
            f"name the {channel} target with --target, or set channels.{channel} in node.toml", field="target"
        )
    setup = ChannelSetup(
        config=node.config.channels,
        workdir=node.data.root / "channels",
        coop=node.config.node.name,
        node_id=node.identity.node_id,
        api=api,
        node_url=node_url,
        build_site=build_site,
        node=node,
    )
    return found.make(where, setup)


def publish(
    node: PublishingNode,
    channel: str,
    *,
    target: str | None = None,
    release: str | None = None,
    dry_run: bool = False,
    api: HubApi | None = None,
    node_url: str | None = None,
    build_site: SiteBuilder | None = None,
    actor: str = "local-admin",
    progress: Callable[[str], None] | None = None,
) -> PublishReport:
    """Publish every release ``channel`` lacks (or up to ``release``), oldest first.

    ``build_site`` renders the site for the site channel
    (:func:`coop.node.web.static_site.site_builder`).
    """
    publisher = publisher_for(node, channel, target, api=api, node_url=node_url, build_site=build_site)
    can = publisher.capabilities
    settled: list[Settled] = []
    if can.reviewed and not dry_run and isinstance(publisher, Reviewer):
        # Reviews that ended since: merged releases go live (and get their tags) first.
        settled = refresh(node, publisher, channel=channel, actor=actor)
    # Withdrawals committed but not yet out of the served releases go first: never ship them.
    node.revise_releases(wait=_REVISION_WAIT)
    releases = node.store.read(list_releases)
    if not releases:
        raise ChannelError("this node has cut no release yet: run coop release DIR first", field="release")
    if release is not None:
        if release not in {r.name for r in releases}:
            raise ChannelError(f"no release {release!r} on this node", field="release")
        releases = [r for r in releases if r.version <= int(release[1:])]
    already = publisher.published()
    held = set(already)
    if can.reviewed:
        # A release the maintainers closed is not offered again (nor one still under review).
        held |= node.store.read(lambda c: declined(c, channel=channel, target=publisher.target))
    todo = _todo(releases, held, latest_only=can.latest_only)
    chosen = [r for r in releases if r.name == release]
    if chosen and chosen[0].label in held:
        todo = chosen  # the channel checks it is the same release
    if can.rebuilt_whole and todo:
        todo = todo[-1:]  # rebuilt whole: once, with every release so far
    report = PublishReport(
        channel=channel,
        target=publisher.target,
        dry_run=dry_run,
        already=already,
        shipped=[],
        planned=[r.label for r in todo],
        settled=settled,
    )
    if dry_run:
        plan = None
        if can.stages_plan and todo:
            last = _folder(node, todo[-1], node_url=node_url)
            plan = publisher.stage(last, _statement(node, last))
        return msgspec.structs.replace(report, plan=plan, posts=_drafted(publisher, todo))
    if can.posts and not todo and isinstance(publisher, BlueskyPublisher):
        publisher.sweep()  # withdrawn records' posts go at every publish, a new release or not
    shipped: list[Publication] = []
    for summary in todo:
        # The last word before the files leave: the policy on any withdrawal the files may
        # still hold (one committed after the revision above, or a revision that failed).
        # The tick first, then the check: every withdrawal committed by that tick is out of the
        # files that leave (or the check refuses them); a later one may still be in them.
        checked, why = node.store.read(
            lambda c, summary=summary: (current_tick(c), withheld(c, summary, federated=False))  # type: ignore[misc]
        )
        if why is not None:
            raise BusyError(
                f"release {summary.name} still holds a record the co-op may no longer publish ({why}):"
                " it is being revised; publish again in a minute",
                field="release",
            )
        if progress is not None:
            progress(f"publishing {summary.label} to {channel} {publisher.target}")
        folder = _folder(node, summary, node_url=node_url)
        ref = publisher.publish(folder, _statement(node, folder))
        shipped.append(
            _remember(node, channel, publisher, folder, ref, actor, checked=checked),
        )
    if isinstance(publisher, BlueskyPublisher) and publisher.failed:
        report = msgspec.structs.replace(
            report, deletions_failed=len(publisher.failed), deletion_warning=publisher.deletion_warning()
        )
    return msgspec.structs.replace(report, shipped=shipped)


def _drafted(publisher: Publisher, todo: list[ReleaseSummary]) -> list[str]:
    """A microblog's dry run: the posts of withdrawn records it would delete, then the posts
    it would send (nothing is sent, no password is needed)."""
    if not (publisher.capabilities.posts and isinstance(publisher, BlueskyPublisher)):
        return []
    lines = [f"delete {uri}" for _seq, uri in publisher.to_delete()]
    return lines + [draft.text for summary in todo for draft in publisher.drafts(summary)]


def refresh_reviews(node: PublishingNode, channel: str, *, actor: str = "system") -> list[Settled]:
    """Settle the releases under review on ``channel``'s configured target whose review ended
    (the serving node's periodic check); nothing when the channel is not in review mode."""
    publisher = publisher_for(node, channel, None)
    if not publisher.capabilities.reviewed or not isinstance(publisher, Reviewer):
        return []
    return refresh(node, publisher, channel=channel, actor=actor)


def _statement(node: PublishingNode, folder: ReleaseFolder) -> bytes:
    """The statement signed at the release's cut (or revision), as stored beside its files."""
    return stored_statement(folder.path, folder.summary, node.signer)


def _todo(releases: list[ReleaseSummary], held: set[str], *, latest_only: bool) -> list[ReleaseSummary]:
    """What a channel lacks: releases newer than it holds, and new revisions of ones it holds.

    ``latest_only``: the channel's branch holds one release (the Hub), so a revision goes out
    only for the newest release it holds, and only if no newer release is about to follow it
    (older tags stay where they are: they are never moved).
    """
    versions: dict[int, int] = {}
    for name in held:
        parsed = release_tag(name)
        if parsed is not None:
            versions[parsed[0]] = max(versions.get(parsed[0], 0), parsed[1])
    newest = max(versions, default=0)
    todo = []
    for summary in releases:
        if summary.label in held:
            continue
        revises_held = versions.get(summary.version, summary.revision) < summary.revision
        if summary.version > newest or (revises_held and (not latest_only or summary.version == newest)):
            todo.append(summary)
    if latest_only and todo:
        last = max(s.version for s in todo)
        todo = [s for s in todo if s.version == last or s.version > newest]
    return todo


def _folder(node: PublishingNode, summary: ReleaseSummary, *, node_url: str | None = None) -> ReleaseFolder:
    """The release as a channel ships it: the buckets the co-op gates now stay home (their data
    files are never published; the card says where to request access)."""
    path = node.data.releases_path / summary.label
    if not (path / "release.json").is_file():
        raise ChannelError(f"the files of {summary.name} are missing from {path}", field="release")
    return ReleaseFolder(
        path=path,
        summary=summary,
        gated=frozenset(node.settings().settings.access.gated),
        access_url=access_url(node, node_url),
    )


def access_url(node: PublishingNode, node_url: str | None = None) -> str:
    """Where a model builder requests access to gated buckets: the node's access page."""
    base = node_url or node.config.channels.site_node_url or node.config.node.public_url
    return base.rstrip("/") + ACCESS_PATH


def _remember(
    node: PublishingNode,
    channel: str,
    publisher: Publisher,
    folder: ReleaseFolder,
    ref: str,
    actor: str,
    *,
    checked: int,
) -> Publication:
    """One release shipped: its publication row, the records it carried (the channel ledger,
    :mod:`coop.node.releases.channel_records`) and the audit entry, in one transaction.

    A release sent for review is open until merged or closed (:func:`channel_records.settle`),
    one the reviewing channel pushed live at once (``Reviewer.last_live``) is merged now; a channel that posts records one by one writes its own ledger rows.  ``checked``: the
    database tick read with the last withdrawal check (kept with the publication; a review's
    merge settles by it).
    """
    now = node.now()
    target, summary, can = publisher.target, folder.summary, publisher.capabilities
    # Offered for review, unless the publisher says it went live at once (git in review mode
    # pushes a revision of an older release as a tag: nothing in it asks for a merge).
    reviewed = can.reviewed and not can.posts
    # A tag pushed beside the reviewed branch never takes a record off what the branch shows.
    on_branch = True
    if reviewed and isinstance(publisher, Reviewer) and publisher.last_live:
        reviewed = False
        on_branch = False
    publication = Publication(
        channel=channel,
        target=target,
        release=summary.label,
        ref=ref,
        records=summary.records,
        at=now,
        state=PublicationState.OPEN if reviewed else PublicationState.MERGED,
        settled_at=None if reviewed else now,
    )

    def write(conn: sqlite3.Connection) -> None:
        record_publication(conn, publication, cleared_tick=checked)
        if not can.posts:
            channel_records.carry(
                conn,
                channel=channel,
                version=summary.version,
                at=now,
                live=not reviewed,
                gated=folder.gated,
                cleared=checked,
                retract=on_branch,
            )
        audit(
            conn,
            signer=node.signer,
            at=now,
            actor=actor,
            action=AuditAction.RELEASE_PUBLISH,
            payload={
                "channel": channel,
                # The target may carry a path or a URL with a user name: the log keeps only its hash.
                "target": hashlib.sha256(target.encode()).hexdigest()[:16],
                "release": summary.label,
                "ref": ref,
            },
        )

    node.store.write(write)
    return publication
