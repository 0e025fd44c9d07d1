"""The channel ledger as ``coop publish`` writes it: straight to a real local bare git repository.

No network: the git "server" is a bare repository in the test's folder.  The node's clock is a
counter (a second per reading), so every step has its own time and nothing reads the wall clock.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coop.governance import Label
from coop.node.channels.publish import publish
from coop.node.collective.settings import Actor
from coop.node.contributions.rights import withdraw_contribution
from coop.node.contributions.submission import EditRequest
from coop.node.ids import uuid7
from coop.node.members.accounts import Member
from coop.node.releases.channel_records import to_retract
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process, seq_of
from gitrepos import bare_repo

GATED = "CC-BY-4.0"

Row = tuple[int, str, int, str, int | None, int | None, int | None]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    made = make_node(tmp_path)
    ticks = itertools.count(int(time.time()))
    made.now = lambda: next(ticks)  # type: ignore[method-assign]
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    return bare_repo(tmp_path)


def _rows(node: Node) -> dict[int, Row]:
    """seq -> (seq, route, version, state, published_at, withdrawn_at, retracted_at) on git."""
    rows = node.store.read(
        lambda c: c.execute(
            "SELECT seq, route, version, state, published_at, withdrawn_at, retracted_at"
            " FROM channel_records WHERE channel = 'git' ORDER BY seq"
        ).fetchall()
    )
    return {int(r[0]): tuple(r) for r in rows}


def _publication_at(node: Node, release: str) -> int:
    return int(
        node.store.read(
            lambda c: c.execute(
                "SELECT at FROM publications WHERE channel = 'git' AND release = ?", (release,)
            ).fetchone()[0]
        )
    )


def _cut_and_publish(node: Node, bare: Path) -> list[str]:
    node.cut_release()
    return [p.release for p in publish(node, "git", target=str(bare)).shipped]


def _released(node: Node, member: Member) -> tuple[list[int], int, int]:
    """Two open public records, one of a gated licence, one federation-only: processed."""
    public = [contribute(node, member, license="CC0-1.0") for _ in range(2)]
    gated = contribute(node, member, license=GATED)
    federation = contribute(node, member, license="CC0-1.0", scope="federation")
    process(node)
    return [seq_of(node, u) for u in public], seq_of(node, gated), seq_of(node, federation)


def test_ledger_git_straight_push_carries_exactly_the_public_released_records(node: Node, bare: Path) -> None:
    node.change_settings({"access.gated": [GATED]}, actor=Actor("ada", admin=True))
    member, _ = make_member(node)
    public, gated, federation = _released(node, member)
    assert _cut_and_publish(node, bare) == ["v1"]
    rows = _rows(node)
    at = _publication_at(node, "v1")
    assert set(rows) == set(public)  # not the gated licence, not the federation-only record
    assert gated not in rows and federation not in rows
    for seq in public:
        assert rows[seq] == (seq, "api", 1, "merged", at, None, None)
    state = node.store.read(
        lambda c: c.execute("SELECT state, settled_at FROM publications WHERE release = 'v1'").fetchone()
    )
    assert tuple(state) == ("merged", at)


def test_ledger_git_withdrawal_is_retracted_by_the_next_publish(node: Node, bare: Path) -> None:
    member, _ = make_member(node)
    uids = [contribute(node, member, license="CC0-1.0") for _ in range(3)]
    process(node)
    assert _cut_and_publish(node, bare) == ["v1"]
    gone = seq_of(node, uids[1])
    node.store.write(lambda c: withdraw_contribution(c, uid=uids[1], member=member, now=node.now()))
    tombstoned = _rows(node)[gone]
    assert tombstoned[3] == "tombstoned" and tombstoned[5] is not None and tombstoned[6] is None
    assert node.store.read(lambda c: to_retract(c, channel="git")) == [(gone, "")]
    newer = contribute(node, member, license="CC0-1.0")
    process(node)
    assert _cut_and_publish(node, bare) == ["v1-r2", "v2"]
    rows = _rows(node)
    first_after = _publication_at(node, "v1-r2")
    assert rows[gone][6] == first_after  # retracted at the first publication after the withdrawal
    withdrawn_at = rows[gone][5]
    assert withdrawn_at is not None and withdrawn_at < first_after
    assert rows[seq_of(node, newer)][2:5] == (2, "merged", _publication_at(node, "v2"))
    assert rows[seq_of(node, uids[0])][6] is None  # the others stay
    assert node.store.read(lambda c: to_retract(c, channel="git")) == []


def test_ledger_git_rectification_tombstones_and_retracts_the_old_record(node: Node, bare: Path) -> None:
    member, _ = make_member(node)
    uid = contribute(node, member, license="CC0-1.0")
    process(node)
    assert _cut_and_publish(node, bare) == ["v1"]
    old = seq_of(node, uid)
    new_uid, _, _ = node.edit(member, uid, EditRequest(label=Label.FAIL), uuid7())
    assert _rows(node)[old][3] == "tombstoned"
    process(node)
    shipped = _cut_and_publish(node, bare)
    rows = _rows(node)
    assert rows[old][6] == _publication_at(node, shipped[0])
    assert rows[seq_of(node, new_uid)][3] == "merged"
