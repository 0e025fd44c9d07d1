"""The git channel against a real bare repository: one commit and tag per release, never a rewrite."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from coop.node.channels.base import ChannelError, ReleaseFolder
from coop.node.channels.publish import publish, publisher_for
from coop.node.contributions.rights import withdraw_contribution
from coop.node.metrics import prometheus
from coop.node.releases.repository import list_releases
from coop.node.releases.statement import STATEMENT, release_statement, verify_release
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process
from nodeproc import coop

pytestmark = pytest.mark.integration


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def _uids(path: Path) -> set[str]:
    return {json.loads(line)["uid"] for line in path.read_text().splitlines()} if path.exists() else set()


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    """An empty bare repository, as a server would host it."""
    path = tmp_path / "dataset.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(path)], check=True, timeout=60)
    return path


def test_three_releases_one_with_a_withdrawal_reach_a_bare_repository(tmp_path: Path, bare: Path) -> None:
    node = make_node(tmp_path)
    try:
        member, _ = make_member(node)
        first = [contribute(node, member, license="CC-BY-4.0") for _ in range(3)]
        process(node)
        node.cut_release()
        assert [p.release for p in publish(node, "git", target=str(bare)).shipped] == ["v1"]
        gone = first[1]
        node.store.write(lambda c: withdraw_contribution(c, uid=gone, member=member, now=node.now()))
        contribute(node, member, license="CC0-1.0")
        process(node)
        node.cut_release()  # v1 is revised first: its withdrawn record leaves it (v1-r2)
        # The revision of v1 (the branch's head: the branch moves on to it) and v2, in order.
        report = publish(node, "git", target=str(bare))
        assert [p.release for p in report.shipped] == ["v1-r2", "v2"]
        contribute(node, member, license="CC0-1.0")
        process(node)
        node.cut_release()
        root = node.data.root
        node_id = node.identity.node_id
        public_key = node.identity.public_key
    finally:
        node.close()
    # The third through the command line, as an admin would.
    out = coop("publish", str(root), "--channel", "git", "--target", str(bare)).stdout
    assert out.startswith("v3 -> git ")

    log = git("log", "--format=%s", "main", cwd=bare).splitlines()
    assert log == [
        "Release v3: 4 records, 1 withdrawn",
        "Release v2: 3 records, 1 withdrawn",
        "Release v1 revision 2: 2 records, 0 withdrawn",
        "Release v1: 3 records, 0 withdrawn",
    ]
    tags = git("tag", "--list", cwd=bare).split()
    assert tags == ["v1", "v1-r2", "v2", "v3"]
    commits = git("rev-list", "main", cwd=bare).split()
    for tag, commit in zip(["v3", "v2", "v1-r2", "v1"], commits, strict=True):
        assert git("rev-list", "-n", "1", tag, cwd=bare).strip() == commit
    # Each tag's tree is that release exactly, and checks against the co-op's key.
    for tag in tags:
        checkout = tmp_path / f"check-{tag}"
        git("clone", "--quiet", "--branch", tag, str(bare), str(checkout), cwd=tmp_path)
        summary = verify_release(checkout, public_key)
        assert summary.label == tag
        assert summary.node_id == node_id
        files = {
            p.relative_to(checkout).as_posix()
            for p in checkout.rglob("*")
            if p.is_file() and ".git" not in p.parts
        }
        assert files == {f.path for f in summary.files} | {"SHA256SUMS", STATEMENT}
    v1, v1r2, v2 = tmp_path / "check-v1", tmp_path / "check-v1-r2", tmp_path / "check-v2"
    assert gone in _uids(v1 / "cc-by" / "data.jsonl")  # the tag never moves: git history keeps it
    assert gone not in _uids(v1r2 / "cc-by" / "data.jsonl")
    assert (v1r2 / "revisions" / "r2.dsse.json").is_file()
    assert gone not in _uids(v2 / "cc-by" / "data.jsonl")
    assert gone in _uids(v2 / "tombstones.jsonl")
    # The withdrawal is in the history as a change of the bucket file, and the card says so.
    assert "1 withdrawn" in git("show", "--stat", "--format=%s", "v2", cwd=bare)

    # Publishing again changes nothing; the channel's state feeds the metrics.
    again = coop("publish", str(root), "--channel", "git", "--target", str(bare)).stdout
    assert "nothing to publish" in again
    assert git("rev-list", "--count", "main", cwd=bare).strip() == "4"
    node = Node(root)
    try:
        metrics = node.metrics()
        assert metrics.channels["git"]["release"] == 3
        assert metrics.channels["git"]["lag"] == 0
        assert 'coop_channel_lag{channel="git"} 0' in prometheus(metrics)
        entries = node.store.read(
            lambda c: [
                r[0] for r in c.execute("SELECT action FROM audit_log WHERE action = 'release.publish'")
            ]
        )
        assert len(entries) == 4
        assert node.verify_audit()
        # An older release after a newer one would rewrite history: refused, nothing pushed
        # (here someone deleted the v2 tag on the server).
        git("tag", "-d", "v2", cwd=bare)
        publisher = publisher_for(node, "git", str(bare))
        v2_summary = node.store.read(list_releases)[1]
        with pytest.raises(ChannelError, match="rewrite history"):
            publisher.publish(
                ReleaseFolder(path=node.data.releases_path / "v2", summary=v2_summary),
                release_statement(v2_summary, node.signer),
            )
    finally:
        node.close()
    assert git("rev-list", "--count", "main", cwd=bare).strip() == "4"
    # Another node's v1 is not "already there": the repository holds a different v1.
    stranger = make_node(tmp_path, name="Stranger Co-op")
    try:
        member, _ = make_member(stranger)
        contribute(stranger, member)
        process(stranger)
        stranger.cut_release()
        with pytest.raises(ChannelError, match="different v1"):
            publish(stranger, "git", target=str(bare), release="v1")
    finally:
        stranger.close()


def test_a_revision_of_an_older_release_is_a_new_tag_off_the_branch(tmp_path: Path, bare: Path) -> None:
    node = make_node(tmp_path)
    try:
        member, _ = make_member(node)
        gone = contribute(node, member, license="CC0-1.0")
        keep = contribute(node, member, license="CC0-1.0")
        process(node)
        node.cut_release()
        contribute(node, member, license="CC0-1.0")
        process(node)
        node.cut_release()
        assert [p.release for p in publish(node, "git", target=str(bare)).shipped] == ["v1", "v2"]
        tagged = {t: git("rev-list", "-n", "1", t, cwd=bare).strip() for t in ("v1", "v2")}
        node.store.write(lambda c: withdraw_contribution(c, uid=gone, member=member, now=node.now()))

        report = publish(node, "git", target=str(bare))  # revises v1 and v2 first, then ships them

        assert [p.release for p in report.shipped] == ["v1-r2", "v2-r2"]
        public_key = node.identity.public_key
    finally:
        node.close()
    # Published tags never move; the branch holds the latest release's newest revision.
    assert {t: git("rev-list", "-n", "1", t, cwd=bare).strip() for t in ("v1", "v2")} == tagged
    log = git("log", "--format=%s", "main", cwd=bare).splitlines()
    assert log == [
        "Release v2 revision 2: 2 records, 0 withdrawn",
        "Release v2: 3 records, 0 withdrawn",
        "Release v1: 2 records, 0 withdrawn",
    ]
    # v1-r2 is a commit on top of v1, reachable by its tag only.
    assert git("rev-parse", "v1-r2^", cwd=bare).strip() == tagged["v1"]
    assert (
        subprocess.run(
            ["git", "merge-base", "--is-ancestor", "v1-r2", "main"], cwd=bare, check=False
        ).returncode
        == 1
    )
    for tag in ("v1-r2", "v2-r2"):
        checkout = tmp_path / f"check-{tag}"
        git("clone", "--quiet", "--branch", tag, str(bare), str(checkout), cwd=tmp_path)
        assert verify_release(checkout, public_key).label == tag
        assert gone not in _uids(checkout / "cc0" / "data.jsonl")
        assert keep in _uids(checkout / "cc0" / "data.jsonl")


def test_a_remote_that_moved_on_is_built_upon_never_overwritten(tmp_path: Path, bare: Path) -> None:
    node = make_node(tmp_path)
    try:
        member, _ = make_member(node)
        contribute(node, member)
        process(node)
        node.cut_release()
        publish(node, "git", target=str(bare))
        # Someone else adds a file to the repository between two releases.
        other = tmp_path / "other"
        git("clone", "--quiet", str(bare), str(other), cwd=tmp_path)
        (other / "NOTICE").write_text("mirrored by a friend\n")
        git("add", "NOTICE", cwd=other)
        git("-c", "user.name=x", "-c", "user.email=x@example.invalid", "commit", "-qm", "notice", cwd=other)
        git("push", "--quiet", "origin", "main", cwd=other)
        contribute(node, member)
        process(node)
        node.cut_release()
        publish(node, "git", target=str(bare))
    finally:
        node.close()
    # Their commit is kept in the history (v2 is on top of it), nothing was force-pushed.
    log = git("log", "--format=%s", "main", cwd=bare).splitlines()
    assert log == ["Release v2: 2 records, 0 withdrawn", "notice", "Release v1: 1 record, 0 withdrawn"]


def test_git_errors_are_one_line_and_name_the_target(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    try:
        member, _ = make_member(node)
        contribute(node, member)
        process(node)
        node.cut_release()
        root = node.data.root
    finally:
        node.close()
    missing = coop(
        "publish", str(root), "--channel", "git", "--target", str(tmp_path / "nope.git"), check=False
    )
    assert missing.returncode != 0
    assert len(missing.stderr.strip().splitlines()) == 1
    assert "coop: error:" in missing.stderr and "[target]" in missing.stderr
    unset = coop("publish", str(root), "--channel", "git", check=False)
    assert unset.returncode != 0
    assert "channels.git in node.toml" in unset.stderr
