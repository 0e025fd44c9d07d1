"""Releases offered for review: whether the target's maintainers merged or closed them.

A channel in review mode (``Capabilities.reviewed``; the git channel with
``channels.git_mode = "review"``) does not publish a release itself: it offers
it (a review branch) and its ``publications`` row stays ``open``.  :func:`refresh`
asks the target where each open one stands (:meth:`Reviewer.review_states`) and,
in one write transaction, settles the merged and closed ones in the channel
ledger (:func:`coop.node.releases.channel_records.settle`: the records go live on
a merge, at that time) and writes one audit entry each (``release.merged`` or
``release.closed``).  ``coop publish`` refreshes first; a serving node refreshes
every ``channels.review_check_s`` (:mod:`coop.node.scheduler`).

A release settled closed is not offered again (:func:`declined`, read by
:mod:`coop.node.releases.channel_reads` as the open reviews are): the
maintainers said no to it; the next release carries its records anyway.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import msgspec

from coop.governance import Signer
from coop.node.channels.base import Capabilities, release_tag
from coop.node.collective.audit import AuditAction, audit
from coop.node.releases.channel_reads import declined_reviews as declined
from coop.node.releases.channel_reads import open_reviews
from coop.node.releases.channel_records import PublicationState, settle
from coop.node.storage.store import Store

__all__ = ["ReviewNode", "Reviewer", "Settled", "declined", "open_reviews", "refresh"]


class ReviewNode(Protocol):
    """What a refresh reads of the node (:class:`coop.node.runtime.Node` is one)."""

    signer: Signer
    store: Store

    def now(self) -> int: ...


@runtime_checkable
class Reviewer(Protocol):
    """A publisher that can tell where its offered releases stand (the git channel is one).

    ``last_live``: whether its last publish went live at once (a revision of an older
    release pushed with its tag) rather than offered for review; None before the first.
    """

    target: str
    capabilities: Capabilities
    last_live: bool | None

    def review_states(
        self, labels: Sequence[str], *, commits: Mapping[str, str] | None = None
    ) -> Mapping[str, str]: ...


class Settled(msgspec.Struct, frozen=True, kw_only=True):
    """A release whose review ended in this refresh: ``merged`` or ``closed``."""

    release: str
    state: str
    ref: str


def _order(label: str) -> tuple[int, int]:
    return release_tag(label) or (0, 0)


def refresh(node: ReviewNode, publisher: Reviewer, *, channel: str, actor: str = "system") -> list[Settled]:
    """Settle every release offered to ``publisher``'s target whose review ended; returns them,
    oldest first.  A channel not in review mode, or with nothing open, is left alone."""
    if not publisher.capabilities.reviewed:
        return []
    target = publisher.target
    offered = node.store.read(lambda c: open_reviews(c, channel=channel, target=target))
    if not offered:
        return []
    states = publisher.review_states(sorted(offered, key=_order), commits=offered)
    ended = [
        Settled(release=label, state=states[label], ref=offered[label])
        for label in sorted(offered, key=_order)
        if states.get(label) in (PublicationState.MERGED, PublicationState.CLOSED)
    ]
    if not ended:
        return []
    now = node.now()
    # The target may carry a path or a URL with a user name: the log keeps only its hash.
    hashed = hashlib.sha256(target.encode()).hexdigest()[:16]

    def write(conn: sqlite3.Connection) -> None:
        still = open_reviews(conn, channel=channel, target=target)
        for item in ended:
            if item.release not in still:
                continue  # another refresh settled it meanwhile
            merged = item.state == PublicationState.MERGED
            settle(
                conn,
                channel=channel,
                version=_order(item.release)[0],
                state=PublicationState.MERGED.value if merged else PublicationState.CLOSED.value,
                at=now,
                label=item.release,
            )
            audit(
                conn,
                signer=node.signer,
                at=now,
                actor=actor,
                action=AuditAction.RELEASE_MERGED if merged else AuditAction.RELEASE_CLOSED,
                payload={"channel": channel, "target": hashed, "release": item.release, "ref": item.ref},
            )

    node.store.write(write)
    return ended
