"""The channel ledger orders withdrawals and publications by the database tick, not the clock.

``coop publish`` reads the tick with its last withdrawal check; a record withdrawn at or
before that tick is out of the files that leave (the publication retracts it), one withdrawn
after it is still in them (live, retracted at the next publication).  The node's clock here is
frozen, so every withdrawal and publication shares one second: whole-second times cannot tell
them apart, only the order can.  No network: the git "server" is a bare repository in the
test's folder; the withdrawal "between the check and the recording" is injected by wrapping
the publisher's folder lookup, which runs between the two.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coop.node.channels import publish as publishing
from coop.node.channels.base import ReleaseFolder
from coop.node.channels.publish import publish
from coop.node.contributions.rights import withdraw_contribution
from coop.node.releases.channel_records import to_retract
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process, seq_of
from gitrepos import bare_repo

NOW = int(time.time())


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    made = make_node(tmp_path)
    made.now = lambda: NOW  # type: ignore[method-assign]
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    return bare_repo(tmp_path)


def _row(node: Node, seq: int) -> tuple[str, int | None, int | None, int | None]:
    """(state, published_at, withdrawn_at, retracted_at) of ``seq`` on git."""
    row = node.store.read(
        lambda c: c.execute(
            "SELECT state, published_at, withdrawn_at, retracted_at FROM channel_records"
            " WHERE channel = 'git' AND seq = ?",
            (seq,),
        ).fetchone()
    )
    return (str(row[0]), row[1], row[2], row[3])


def _shipped(node: Node, bare: Path) -> list[str]:
    return [p.release for p in publish(node, "git", target=str(bare)).shipped]


def test_ledger_tick_withdrawal_in_the_second_of_the_next_publish_is_retracted_by_it(
    node: Node, bare: Path
) -> None:
    member, _ = make_member(node)
    uids = [contribute(node, member, license="CC0-1.0") for _ in range(2)]
    process(node)
    node.cut_release()
    assert _shipped(node, bare) == ["v1"]
    gone = seq_of(node, uids[0])
    node.store.write(lambda c: withdraw_contribution(c, uid=uids[0], member=member, now=node.now()))

    assert _shipped(node, bare) == ["v1-r2"]  # revised first: the record is out of its files

    assert _row(node, gone) == ("tombstoned", NOW, NOW, NOW)  # all in one second, retracted
    assert _row(node, seq_of(node, uids[1])) == ("merged", NOW, None, None)
    assert node.store.read(lambda c: to_retract(c, channel="git")) == []
    cleared = node.store.read(
        lambda c: c.execute("SELECT release, cleared_tick FROM publications ORDER BY id").fetchall()
    )
    left = node.store.read(
        lambda c: c.execute("SELECT left_tick FROM contributions WHERE seq = ?", (gone,)).fetchone()[0]
    )
    assert [r for r, _ in cleared] == ["v1", "v1-r2"]
    assert cleared[0][1] < left <= cleared[1][1]  # checked before the withdrawal, then after it


def test_ledger_tick_withdrawal_after_the_check_stays_live_until_the_next_publish(
    node: Node, bare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    member, _ = make_member(node)
    uids = [contribute(node, member, license="CC0-1.0") for _ in range(2)]
    process(node)
    node.cut_release()
    gone = seq_of(node, uids[0])
    looked_up = publishing._folder

    def withdrawn_meanwhile(*args: object, **kwargs: object) -> ReleaseFolder:
        # After the check, before the recording; its clock five seconds behind the publisher's:
        # by time it would look withdrawn before the check, by order it came after.
        node.store.write(lambda c: withdraw_contribution(c, uid=uids[0], member=member, now=NOW - 5))
        monkeypatch.setattr(publishing, "_folder", looked_up)
        return looked_up(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(publishing, "_folder", withdrawn_meanwhile)
    assert _shipped(node, bare) == ["v1"]

    # The files that left held it: live on git, withdrawn, not retracted yet.
    assert _row(node, gone) == ("tombstoned", NOW, NOW - 5, None)
    assert node.store.read(lambda c: to_retract(c, channel="git")) == [(gone, "")]

    assert _shipped(node, bare) == ["v1-r2"]
    assert _row(node, gone) == ("tombstoned", NOW, NOW - 5, NOW)
    assert node.store.read(lambda c: to_retract(c, channel="git")) == []
