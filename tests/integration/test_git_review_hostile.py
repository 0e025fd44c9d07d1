"""The git channel in review mode against a hostile target: a real bare repository and a real
maintainer's clone that re-creates branches, plants and moves tags, and merges without the data.

Nothing is faked: the node and the "maintainer" both talk git to a bare repository on disk.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from coop.node.channels.base import ChannelError
from coop.node.channels.git import GitPublisher
from coop.node.channels.publish import _folder, _statement, publish, publisher_for, refresh_reviews
from coop.node.releases.repository import list_releases
from coop.node.runtime import Node

from gitrepos import WHO, bare_repo, clone, git, git_node, has, release

pytestmark = pytest.mark.integration


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    return bare_repo(tmp_path, seeded=True)


@pytest.fixture
def maintainer(tmp_path: Path, bare: Path) -> Path:
    return clone(bare, tmp_path / "maintainer")


def _state(node: Node, release: str) -> str:
    row = node.store.read(
        lambda c: c.execute("SELECT state FROM publications WHERE release = ?", (release,)).fetchone()
    )
    return str(row[0])


def _foreign(maintainer: Path, *, base: str = "origin/main") -> str:
    """A commit made by someone else, with a release.json of its own, on top of ``base``."""
    git("fetch", "--quiet", "origin", cwd=maintainer)
    git("checkout", "--quiet", "--detach", base, cwd=maintainer)
    (maintainer / "release.json").write_text('{"name": "v1", "coop": "Someone Else"}\n')
    git("add", "release.json", cwd=maintainer)
    git(*WHO, "commit", "-qm", "not the co-op's release", cwd=maintainer)
    return git("rev-parse", "HEAD", cwd=maintainer).strip()


def _merge(maintainer: Path, ref: str, *, strategy: str | None = None) -> None:
    git("fetch", "--quiet", "origin", cwd=maintainer)
    git("checkout", "--quiet", "-B", "main", "origin/main", cwd=maintainer)
    how = ("-s", strategy) if strategy else ()
    git(*WHO, "merge", "--quiet", "--no-ff", *how, "-m", f"Merge {ref}", ref, cwd=maintainer)
    git("push", "--quiet", "origin", "main", cwd=maintainer)


def test_git_review_recreated_branch_with_foreign_content_is_not_the_release(
    tmp_path: Path, bare: Path, maintainer: Path
) -> None:
    """Finding 4: coop/v1 deleted, re-created with someone else's commit, merged: not merged, no tag."""
    node = git_node(tmp_path, bare)
    try:
        release(node)
        publish(node, "git")
        git("push", "--quiet", "origin", "--delete", "coop/v1", cwd=maintainer)
        foreign = _foreign(maintainer)
        git("push", "--quiet", "origin", f"{foreign}:refs/heads/coop/v1", cwd=maintainer)
        _merge(maintainer, "origin/coop/v1")

        settled = refresh_reviews(node, "git")

        assert [(s.release, s.state) for s in settled] == [("v1", "closed")]
        assert _state(node, "v1") == "closed"
        assert not has("refs/tags/v1", bare)
    finally:
        node.close()


def test_git_review_a_tag_named_like_the_release_elsewhere_does_not_merge_it(
    tmp_path: Path, bare: Path, maintainer: Path
) -> None:
    """Finding 5: a tag v1 on a foreign commit leaves v1 open; the release is not tagged over it."""
    node = git_node(tmp_path, bare)
    try:
        release(node)
        offered = publish(node, "git").shipped[0].ref
        foreign = _foreign(maintainer)
        git("tag", "v1", foreign, cwd=maintainer)
        git("push", "--quiet", "origin", "refs/tags/v1", cwd=maintainer)

        assert refresh_reviews(node, "git") == []
        assert _state(node, "v1") == "open"
        assert git("rev-parse", "v1^{commit}", cwd=bare).strip() == foreign

        # The maintainers then merge the real branch: merged, and the co-op's commit is what merged.
        _merge(maintainer, "origin/coop/v1")
        assert [(s.release, s.state) for s in refresh_reviews(node, "git")] == [("v1", "merged")]
        assert git("merge-base", "--is-ancestor", offered, "main", cwd=bare) == ""
    finally:
        node.close()


def test_git_review_a_merge_that_drops_the_data_is_not_a_merge(
    tmp_path: Path, bare: Path, maintainer: Path
) -> None:
    """Finding 7: `merge -s ours` puts the release commit in main's history without its files."""
    node = git_node(tmp_path, bare)
    try:
        release(node)
        publish(node, "git")
        _merge(maintainer, "origin/coop/v1", strategy="ours")
        assert git("ls-tree", "--name-only", "main", cwd=bare).split() == ["README.md"]

        assert refresh_reviews(node, "git") == []
        assert _state(node, "v1") == "open"
        assert not has("refs/tags/v1", bare)

        # Once main holds every release file as offered (beside a file of the maintainers'),
        # the release commit in its history counts as merged, though no commit has its tree.
        git("checkout", "--quiet", "-B", "main", "origin/main", cwd=maintainer)
        git("checkout", "origin/coop/v1", "--", ".", cwd=maintainer)
        (maintainer / "CONTRIBUTING.md").write_text("Be kind.\n")
        git("add", "--all", cwd=maintainer)
        git(*WHO, "commit", "-qm", "take the release after all", cwd=maintainer)
        git("push", "--quiet", "origin", "main", cwd=maintainer)
        assert [(s.release, s.state) for s in refresh_reviews(node, "git")] == [("v1", "merged")]
    finally:
        node.close()


def test_git_tag_moved_on_the_target_does_not_wedge_fetch_and_is_refused_clearly(
    tmp_path: Path, bare: Path, maintainer: Path
) -> None:
    """Finding 6: v1 force-moved on the target; the clone follows it and the channel says why it refuses."""
    node = git_node(tmp_path, bare, mode="commit")
    try:
        release(node)
        publish(node, "git")
        foreign = _foreign(maintainer)
        git("tag", "-f", "v1", foreign, cwd=maintainer)
        git("push", "--quiet", "--force", "origin", "refs/tags/v1", cwd=maintainer)

        publisher = publisher_for(node, "git", None)
        assert isinstance(publisher, GitPublisher)
        assert publisher.published() == ["v1"]  # the fetch no longer fails on the moved tag
        assert git("rev-parse", "v1^{commit}", cwd=publisher.workdir).strip() == foreign
        folder = _folder(node, node.store.read(list_releases)[-1])
        with pytest.raises(ChannelError, match="holds a different v1"):
            publisher.publish(folder, _statement(node, folder))
    finally:
        node.close()
