"""A withdrawn record leaves a channel only with the release the channel shows.

Git in review mode pushes a revision of an older release as a tag at once, while the revision of
the newest release waits for its maintainers: the branch still holds the withdrawn record until
they merge it, so the older tag must not count as the record's retraction.
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coop.node.contributions.rights import withdraw_contribution
from coop.node.releases.channel_records import carry, settle, to_retract
from coop.node.releases.publications import Publication, record_publication
from coop.node.runtime import Node
from coop.node.storage.store import current_tick

from factories import contribute, make_member, make_node, process, seq_of


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    made = make_node(tmp_path)
    ticks = itertools.count(int(time.time()))
    made.now = lambda: next(ticks)  # type: ignore[method-assign]
    try:
        yield made
    finally:
        made.close()


def _publish(node: Node, release: str, *, live: bool) -> None:
    version = int(release[1:].split("-")[0])
    at = node.now()

    def write(conn: sqlite3.Connection) -> None:
        state = "merged" if live else "open"
        publication = Publication(
            channel="git", target="t", release=release, ref="r", records=0, at=at, state=state
        )
        tick = current_tick(conn)
        record_publication(conn, publication, cleared_tick=tick)
        carry(conn, channel="git", version=version, at=at, live=live, gated=(), cleared=tick)

    node.store.write(write)


def _retracted_at(node: Node, seq: int) -> int | None:
    row = node.store.read(
        lambda c: c.execute(
            "SELECT retracted_at FROM channel_records WHERE channel = 'git' AND seq = ?", (seq,)
        ).fetchone()
    )
    return None if row[0] is None else int(row[0])


def test_ledger_an_older_revision_live_does_not_retract_what_the_newest_still_holds(node: Node) -> None:
    member, _ = make_member(node)
    uid = contribute(node, member, license="CC0-1.0")
    process(node)
    node.cut_release()
    _publish(node, "v1", live=True)
    contribute(node, member, license="CC0-1.0")
    process(node)
    node.cut_release()
    _publish(node, "v2", live=True)
    gone = seq_of(node, uid)
    node.store.write(lambda c: withdraw_contribution(c, uid=uid, member=member, now=node.now()))

    _publish(node, "v1-r2", live=True)  # a tag off the branch: the branch still shows v2
    assert _retracted_at(node, gone) is None
    assert node.store.read(lambda c: to_retract(c, channel="git")) == [(gone, "")]

    _publish(node, "v2-r2", live=False)  # offered for review: not yet gone
    assert _retracted_at(node, gone) is None
    merged = node.now()
    node.store.write(lambda c: settle(c, channel="git", version=2, state="merged", at=merged))
    assert _retracted_at(node, gone) == merged
    assert node.store.read(lambda c: to_retract(c, channel="git")) == []
