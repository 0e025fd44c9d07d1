"""The git channel in review mode against a real bare repository and a maintainer's real clone.

Nothing is faked: the node pushes review branches with git, a second clone plays the
repository's maintainers (a true merge, a squash merge, a deleted branch), and the node reads
the outcome back from the repository alone.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from coop.node.channels.publish import publish, refresh_reviews
from coop.node.cli.node_cmds import shipped_line
from coop.node.contributions.rights import withdraw_contribution
from coop.node.runtime import Node

from factories import contribute, make_member, process, seq_of
from gitrepos import WHO, bare_repo, clone, git, git_node, has, release
from nodeproc import coop

pytestmark = pytest.mark.integration


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    """A bare repository with one maintainer's commit on main, as a hosted dataset repo would be."""
    return bare_repo(tmp_path, seeded=True)


@pytest.fixture
def maintainer(tmp_path: Path, bare: Path) -> Path:
    return clone(bare, tmp_path / "maintainer")


def _publications(node: Node) -> dict[str, tuple[str, int | None]]:
    rows = node.store.read(
        lambda c: c.execute("SELECT release, state, settled_at FROM publications ORDER BY id").fetchall()
    )
    return {str(r): (str(s), a) for r, s, a in rows}


def _ledger(node: Node) -> list[tuple[int, str, int | None]]:
    rows = node.store.read(
        lambda c: c.execute(
            "SELECT version, state, published_at FROM channel_records WHERE channel = 'git' ORDER BY seq"
        ).fetchall()
    )
    return [(int(v), str(s), p) for v, s, p in rows]


def _audited(node: Node, action: str) -> list[str]:
    rows = node.store.read(
        lambda c: c.execute(
            "SELECT json_extract(payload, '$.release') FROM audit_log WHERE action = ? ORDER BY seq",
            (action,),
        ).fetchall()
    )
    return [str(r) for (r,) in rows]


def _merge(maintainer: Path, branch: str, *, squash: bool = False) -> None:
    git("fetch", "--quiet", "origin", cwd=maintainer)
    git("checkout", "--quiet", "main", cwd=maintainer)
    git("reset", "--quiet", "--hard", "origin/main", cwd=maintainer)
    if squash:
        git("merge", "--quiet", "--squash", f"origin/{branch}", cwd=maintainer)
        git(*WHO, "commit", "-qm", f"Squashed {branch}", cwd=maintainer)
    else:
        git(*WHO, "merge", "--quiet", "--no-ff", "-m", f"Merge {branch}", f"origin/{branch}", cwd=maintainer)
    git("push", "--quiet", "origin", "main", cwd=maintainer)


def test_git_review_offers_a_branch_and_a_true_merge_makes_it_live(
    tmp_path: Path, bare: Path, maintainer: Path
) -> None:
    start = git("rev-parse", "main", cwd=bare).strip()
    node = git_node(tmp_path, bare)
    try:
        release(node)
        report = publish(node, "git")
        assert [p.release for p in report.shipped] == ["v1"]
        offered = report.shipped[0].ref
        # On its own branch, on top of main; main untouched, no tag.
        assert git("rev-parse", "coop/v1", cwd=bare).strip() == offered
        assert git("rev-parse", "coop/v1^", cwd=bare).strip() == start
        assert git("rev-parse", "main", cwd=bare).strip() == start
        assert git("tag", "--list", cwd=bare).split() == []
        assert _publications(node) == {"v1": ("open", None)}
        assert _ledger(node) == [(1, "open", None), (1, "open", None)]
        # Still under review: a refresh changes nothing, a publish offers nothing again.
        assert refresh_reviews(node, "git") == []
        again = publish(node, "git")
        assert again.shipped == [] and again.already == ["v1"]

        _merge(maintainer, "coop/v1")
        settled = refresh_reviews(node, "git")

        assert [(s.release, s.state) for s in settled] == [("v1", "merged")]
        state, settled_at = _publications(node)["v1"]
        assert state == "merged" and settled_at is not None
        assert _ledger(node) == [(1, "merged", settled_at), (1, "merged", settled_at)]
        assert git("rev-list", "-n", "1", "v1", cwd=bare).strip() == offered  # tagged once merged
        assert _audited(node, "release.merged") == ["v1"]
        assert node.verify_audit()
        # Settled once: the next refresh has nothing left to do.
        assert refresh_reviews(node, "git") == []
    finally:
        node.close()


def test_git_review_sees_a_squash_merge_after_the_branch_is_deleted(
    tmp_path: Path, bare: Path, maintainer: Path
) -> None:
    node = git_node(tmp_path, bare)
    try:
        release(node)
        offered = publish(node, "git").shipped[0].ref
        root = node.data.root
    finally:
        node.close()
    _merge(maintainer, "coop/v1", squash=True)
    git("push", "--quiet", "origin", "--delete", "coop/v1", cwd=maintainer)
    assert not has("refs/heads/coop/v1", bare)

    # Through the command line, as an admin would: coop publish looks at reviews first.
    out = coop("publish", str(root), "--channel", "git").stdout

    assert out.splitlines() == [
        "v1 review on git: merged",
        f"git {bare} already holds v1: nothing to publish",
    ]
    node = Node(root)
    try:
        assert _publications(node)["v1"][0] == "merged"
        assert {state for _, state, _ in _ledger(node)} == {"merged"}
        # The tag points at the release commit as the node made it (its tree is main's).
        assert git("rev-list", "-n", "1", "v1", cwd=bare).strip() == offered
        assert git("rev-parse", "v1^{tree}", cwd=bare) == git("rev-parse", "main^{tree}", cwd=bare)
    finally:
        node.close()


def test_git_review_deleted_branch_is_closed_and_not_offered_again(
    tmp_path: Path, bare: Path, maintainer: Path
) -> None:
    start = git("rev-parse", "main", cwd=bare).strip()
    node = git_node(tmp_path, bare)
    try:
        release(node)
        publish(node, "git")
        git("push", "--quiet", "origin", "--delete", "coop/v1", cwd=maintainer)

        report = publish(node, "git")

        assert [(s.release, s.state) for s in report.settled] == [("v1", "closed")]
        assert report.shipped == []  # the maintainers said no to v1: not offered again
        assert _publications(node)["v1"][0] == "closed"
        assert _ledger(node) == [(1, "closed", None), (1, "closed", None)]
        assert _audited(node, "release.closed") == ["v1"]
        assert git("tag", "--list", cwd=bare).split() == []
        # The next release is offered on main again, not on the closed one.
        release(node)
        shipped = publish(node, "git").shipped
        assert [p.release for p in shipped] == ["v2"]
        assert git("rev-parse", "coop/v2^", cwd=bare).strip() == start
        assert git("rev-parse", "main", cwd=bare).strip() == start
    finally:
        node.close()


def test_git_review_stacks_v2_on_open_v1_and_one_merge_settles_both(
    tmp_path: Path, bare: Path, maintainer: Path
) -> None:
    node = git_node(tmp_path, bare)
    try:
        release(node, count=1)
        v1 = publish(node, "git").shipped[0].ref
        release(node, count=1)
        v2 = publish(node, "git").shipped[0].ref
        assert git("rev-parse", "coop/v2^", cwd=bare).strip() == v1  # stacked on the open v1
        assert _publications(node) == {"v1": ("open", None), "v2": ("open", None)}

        _merge(maintainer, "coop/v2")  # v1's branch is left alone; v2 holds it
        settled = refresh_reviews(node, "git")

        assert [(s.release, s.state) for s in settled] == [("v1", "merged"), ("v2", "merged")]
        assert {r: s for r, (s, _) in _publications(node).items()} == {"v1": "merged", "v2": "merged"}
        assert [(v, s) for v, s, _ in _ledger(node)] == [(1, "merged"), (2, "merged")]
        assert all(published is not None for _, _, published in _ledger(node))
        assert git("rev-list", "-n", "1", "v1", cwd=bare).strip() == v1
        assert git("rev-list", "-n", "1", "v2", cwd=bare).strip() == v2
        # The next release goes on main now: coop/v1 is merged, not open.
        release(node, count=1)
        publish(node, "git")
        assert git("rev-parse", "coop/v3^", cwd=bare).strip() == git("rev-parse", "main", cwd=bare).strip()
    finally:
        node.close()


def test_git_review_withdrawal_leaves_git_only_when_its_revision_is_merged(
    tmp_path: Path, bare: Path, maintainer: Path
) -> None:
    node = git_node(tmp_path, bare)
    try:
        member, _ = make_member(node)
        gone = contribute(node, member, license="CC0-1.0")
        contribute(node, member, license="CC0-1.0")
        process(node)
        node.cut_release()
        publish(node, "git")
        _merge(maintainer, "coop/v1")
        refresh_reviews(node, "git")
        # Withdrawn just before the revision is offered (most often in the same second: the
        # ledger goes by the database tick, not by the clock).
        node.store.write(lambda c: withdraw_contribution(c, uid=gone, member=member, now=node.now()))

        shipped = publish(node, "git").shipped  # revises v1 first, then offers v1-r2 for review

        assert [p.release for p in shipped] == ["v1-r2"]
        assert git("rev-parse", "coop/v1-r2^", cwd=bare).strip() == git("rev-parse", "main", cwd=bare).strip()
        assert not has("refs/tags/v1-r2", bare)

        def retractions(c: sqlite3.Connection) -> list[tuple[str, bool, bool]]:
            rows = c.execute(
                "SELECT state, withdrawn_at IS NOT NULL, retracted_at IS NOT NULL FROM channel_records"
                " WHERE channel = 'git' ORDER BY seq"
            )
            return [(str(s), bool(w), bool(r)) for s, w, r in rows]

        # Withdrawn, but still live on git until the maintainers merge the revision.
        assert node.store.read(retractions) == [("tombstoned", True, False), ("merged", False, False)]

        _merge(maintainer, "coop/v1-r2")
        assert [(s.release, s.state) for s in refresh_reviews(node, "git")] == [("v1-r2", "merged")]

        assert node.store.read(retractions) == [("tombstoned", True, True), ("merged", False, False)]
        assert has("refs/tags/v1-r2", bare)
    finally:
        node.close()


def test_git_review_revision_of_an_older_release_is_live_at_once_as_a_tag(
    tmp_path: Path, bare: Path, maintainer: Path
) -> None:
    node = git_node(tmp_path, bare)
    try:
        member, _ = make_member(node)
        gone = contribute(node, member, license="CC0-1.0")
        process(node)
        node.cut_release()
        publish(node, "git")
        _merge(maintainer, "coop/v1")
        refresh_reviews(node, "git")
        release(node, count=1)
        publish(node, "git")  # v2 offered, still open
        node.store.write(lambda c: withdraw_contribution(c, uid=gone, member=member, now=node.now()))

        shipped = {p.release: p for p in publish(node, "git").shipped}

        # v1-r2 revises an older release: a tag, live at once, not a review branch.
        assert has("refs/tags/v1-r2", bare) and not has("refs/heads/coop/v1-r2", bare)
        revised = shipped["v1-r2"]
        assert (revised.state, revised.settled_at) == ("merged", revised.at)
        assert _publications(node)["v1-r2"] == ("merged", revised.at)
        assert shipped_line(revised) == f"v1-r2 -> git {bare} {revised.ref}"
        # The newest release's revision is still offered for review.
        assert _publications(node)["v2-r2"] == ("open", None)
        assert has("refs/heads/coop/v2-r2", bare)
        # Nothing left for a refresh to settle on v1-r2: it was never open.
        assert [s.release for s in refresh_reviews(node, "git")] == []
        # main still shows v1 with the withdrawn record: the tag beside it did not retract it.
        seq = seq_of(node, gone)

        def retracted() -> object:
            return node.store.read(
                lambda c: c.execute(
                    "SELECT retracted_at FROM channel_records WHERE channel = 'git' AND seq = ?", (seq,)
                ).fetchone()[0]
            )

        assert retracted() is None
        _merge(maintainer, "coop/v2-r2")  # the maintainers take the revision: now it has left
        refresh_reviews(node, "git")
        assert retracted() is not None
    finally:
        node.close()


def test_git_review_stacks_on_the_recorded_commit_after_the_clone_is_lost(
    tmp_path: Path, bare: Path, maintainer: Path
) -> None:
    node = git_node(tmp_path, bare)
    try:
        release(node, count=1)
        v1 = publish(node, "git").shipped[0].ref
        # A maintainer pushes an empty commit on top of the review branch (same tree: still open).
        git("fetch", "--quiet", "origin", cwd=maintainer)
        git("checkout", "--quiet", "-B", "coop/v1", "origin/coop/v1", cwd=maintainer)
        git(*WHO, "commit", "--quiet", "--allow-empty", "-m", "looked at it", cwd=maintainer)
        git("push", "--quiet", "origin", "coop/v1", cwd=maintainer)
        # The node's clone (and its refs/coop/v1) is lost: only the node's database remembers v1.
        shutil.rmtree(node.data.root / "channels" / "git")
        release(node, count=1)

        v2 = publish(node, "git").shipped[0]

        assert v2.release == "v2" and v2.state == "open"
        assert git("rev-parse", "coop/v2^", cwd=bare).strip() == v1  # on what the node offered
        assert _publications(node) == {"v1": ("open", None), "v2": ("open", None)}
    finally:
        node.close()
