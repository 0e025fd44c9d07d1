"""``coop publish``: ship the node's releases to one channel, in order, and remember where they went.

A channel gets every release it does not hold yet, oldest first (git and the
Hub keep one commit and one ``vN`` tag per release; the site is rebuilt once
with all of them).  A release revised after withdrawals (``coop.node.releases.revision``)
goes out again as ``vN-rK``: git as a new commit and tag on top of the previous
revision, the Hub for the release its branch holds (the latest), the site
rebuilt; tags already published never move.  Each release shipped is one row in ``publications`` (the
metrics report each channel's last release and lag from it) and one entry in
the signed audit log.  A dry run ships nothing: it says what would go, and for
the Hub writes the exact commit plan beside the staged files.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Final

import msgspec

from coop.node.channels.base import (
    ChannelError,
    Publication,
    Publisher,
    ReleaseFolder,
    record_publication,
    release_statement,
    release_tag,
)
from coop.node.channels.git import GitPublisher
from coop.node.channels.hf import HubApi, HubPublisher, hub_api
from coop.node.channels.site import SitePublisher
from coop.node.collective import repository as collective
from coop.node.errors import BusyError
from coop.node.releases.cut import ReleaseSummary, list_releases
from coop.node.releases.revision import withheld
from coop.node.runtime import Node

__all__ = ["CHANNELS", "PublishReport", "publish", "publisher_for"]

CHANNELS: Final = ("git", "hf", "site")
_REVISION_WAIT: Final = 60.0


class PublishReport(msgspec.Struct, frozen=True, kw_only=True):
    channel: str
    target: str
    dry_run: bool
    already: list[str]  # releases the target held before
    shipped: list[Publication]  # what this run published (empty on a dry run)
    planned: list[str]  # what would be published (a dry run), or what was
    plan: str | None = None  # the Hub's commit-plan.json of the last planned release


def _target(node: Node, channel: str, target: str | None) -> str:
    if target:
        return target
    configured = {
        "git": node.config.channels.git,
        "hf": node.config.channels.hf,
        "site": node.config.channels.site,
    }[channel]
    if not configured:
        raise ChannelError(
            f"name the {channel} target with --target, or set channels.{channel} in node.toml", field="target"
        )
    return configured


def publisher_for(
    node: Node, channel: str, target: str | None, *, api: HubApi | None = None, node_url: str | None = None
) -> Publisher:
    where = _target(node, channel, target)
    channels = node.data.root / "channels"
    if channel == "git":
        return GitPublisher(
            where,
            workdir_root=channels / "git",
            branch=node.config.channels.git_branch,
            author=node.config.node.name,
            email=f"{node.identity.node_id[:16]}@coop-flywheel.invalid",
        )
    if channel == "hf":
        return HubPublisher(where, api=api if api is not None else hub_api(), staging_root=channels / "hf")
    if channel == "site":
        url = node_url or node.config.channels.site_node_url or None
        return SitePublisher(node, where, node_url=url)
    raise ChannelError(f"unknown channel {channel!r}: choose one of {', '.join(CHANNELS)}", field="channel")


def publish(
    node: Node,
    channel: str,
    *,
    target: str | None = None,
    release: str | None = None,
    dry_run: bool = False,
    api: HubApi | None = None,
    node_url: str | None = None,
    actor: str = "local-admin",
    progress: Callable[[str], None] | None = None,
) -> PublishReport:
    """Publish every release ``channel`` lacks (or up to ``release``), oldest first."""
    publisher = publisher_for(node, channel, target, api=api, node_url=node_url)
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
    todo = _todo(releases, held, latest_only=channel == "hf")
    chosen = [r for r in releases if r.name == release]
    if chosen and chosen[0].label in held:
        todo = chosen  # the channel checks it is the same release
    if channel == "site" and todo:
        todo = todo[-1:]  # the site is rebuilt whole: once, with every release so far
    report = PublishReport(
        channel=channel,
        target=publisher.target,
        dry_run=dry_run,
        already=already,
        shipped=[],
        planned=[r.label for r in todo],
    )
    if dry_run:
        plan = None
        if isinstance(publisher, HubPublisher) and todo:
            last = todo[-1]
            staged = publisher.plan(_folder(node, last), release_statement(last, node.seed))
            plan = str(Path(staged.staged) / "commit-plan.json")
        return msgspec.structs.replace(report, plan=plan)
    shipped: list[Publication] = []
    for summary in todo:
        # The last word before the files leave: the policy on any withdrawal the files may
        # still hold (one committed after the revision above, or a revision that failed).
        why = node.store.read(lambda c, summary=summary: withheld(c, summary, federated=False))  # type: ignore[misc]
        if why is not None:
            raise BusyError(
                f"release {summary.name} still holds a record the co-op may no longer publish ({why}):"
                " it is being revised; publish again in a minute",
                field="release",
            )
        if progress is not None:
            progress(f"publishing {summary.label} to {channel} {publisher.target}")
        ref = publisher.publish(_folder(node, summary), release_statement(summary, node.seed))
        shipped.append(_remember(node, channel, publisher.target, summary, ref, actor))
    return msgspec.structs.replace(report, shipped=shipped)


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


def _folder(node: Node, summary: ReleaseSummary) -> ReleaseFolder:
    path = node.data.releases_path / summary.label
    if not (path / "release.json").is_file():
        raise ChannelError(f"the files of {summary.name} are missing from {path}", field="release")
    return ReleaseFolder(path=path, summary=summary)


def _remember(
    node: Node, channel: str, target: str, summary: ReleaseSummary, ref: str, actor: str
) -> Publication:
    now = node.now()
    publication = Publication(
        channel=channel, target=target, release=summary.label, ref=ref, records=summary.records, at=now
    )

    def write(conn: sqlite3.Connection) -> None:
        record_publication(conn, publication)
        collective.audit(
            conn,
            seed=node.seed,
            at=now,
            actor=actor,
            action="release.publish",
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
