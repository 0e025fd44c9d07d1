"""Revising served releases after withdrawals (issue 10, defects 3 and 7).

A withdrawn record leaves every release the node still serves, own and
federated, JSONL and Parquet, with new checksums and a signed statement; the
swap is ordered so that a kill at any point leaves a whole revision served.
Tombstone lists name only records their audience held before.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from litestar.testing import TestClient

from coop.governance import Label
from coop.node.contributions.rights import withdraw_contribution
from coop.node.contributions.submission import EditRequest
from coop.node.http.app import create_app
from coop.node.ids import uuid7
from coop.node.releases import revision as revision_module
from coop.node.releases.model import ReleaseSummary
from coop.node.releases.repository import get_federated_release, get_release
from coop.node.releases.revision_statement import verify_revision
from coop.node.releases.statement import verify_release
from coop.node.runtime import Node

from factories import chat_text, contribute, make_member, make_node, process
from nodeproc import ENV


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path)
    try:
        yield node
    finally:
        node.close()


def _withdraw(node: Node, uid: str) -> None:
    node.store.write(lambda c: withdraw_contribution(c, uid=uid, member=None, now=node.now()))


def _uids(path: Path) -> list[str]:
    return [json.loads(line)["uid"] for line in path.read_text().splitlines() if line]


def _served(node: Node, summary: ReleaseSummary, *, federated: bool = False) -> Path:
    """The folder the release's row names: what the node serves."""
    root = node.data.releases_path / "federated" if federated else node.data.releases_path
    return root / summary.label


def _assert_whole(folder: Path, summary: ReleaseSummary) -> None:
    """Every file the summary lists is there with its SHA-256, and SHA256SUMS agrees."""
    for entry in summary.files:
        assert hashlib.sha256((folder / entry.path).read_bytes()).hexdigest() == entry.sha256, entry.path
    sums = (folder / "SHA256SUMS").read_text().splitlines()
    assert {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in sums} == {
        e.path: e.sha256 for e in summary.files
    }


def _released(folder: Path, summary: ReleaseSummary) -> set[str]:
    return {uid for b in summary.buckets for uid in _uids(folder / b.name / "data.jsonl")}


def _all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_revision_withdrawn_record_leaves_every_served_release_jsonl_and_parquet(node: Node) -> None:
    member, _ = make_member(node)
    secret = "zanzibar-walrus-7731"
    gone = contribute(node, member, license="CC-BY-4.0", text=chat_text(secret))
    keep = contribute(node, member, license="CC-BY-4.0")
    other = contribute(node, member, license="CC0-1.0")
    process(node)
    first = node.cut_release()
    later = contribute(node, member, license="CC0-1.0")
    process(node)
    second = node.cut_release()
    assert secret.encode() in _all_bytes(_served(node, first))

    _withdraw(node, gone)
    report = node.revise_releases()

    assert {(r.release, r.revision, r.removed) for r in report.revised} == {("v1", 2, 1), ("v2", 2, 1)}
    for before, kept in ((first, {keep, other}), (second, {keep, other, later})):
        summary = node.store.read(lambda c, v=before.version: get_release(c, v))
        folder = _served(node, summary)
        assert summary.revision == 2 and summary.name == before.name and folder.name == f"{before.name}-r2"
        assert not (node.data.releases_path / before.name).exists()  # the old revision is gone
        assert secret.encode() not in _all_bytes(folder)
        held = set()
        for bucket in summary.buckets:
            jsonl = _uids(folder / bucket.name / "data.jsonl")
            assert pq.read_table(folder / bucket.name / "data.parquet").column("uid").to_pylist() == jsonl
            held |= set(jsonl)
        assert held == kept and summary.records == len(kept)
        _assert_whole(folder, summary)
        assert json.loads((folder / "release.json").read_text())["revision"] == 2
        assert "revision 2" in (folder / "README.md").read_text()
        # The statement signed when the revision was made, stored beside it as channels ship it, checks.
        assert verify_release(folder, node.identity.public_key) == summary
        # The revision statement: signed by the node, names the uid and why, old and new SHA-256.
        statement = verify_revision(
            (folder / "revisions/r2.dsse.json").read_bytes(), node.identity.public_key
        )
        assert [(r.uid, r.reason) for r in statement.removed] == [(gone, "withdrawn by the member")]
        assert statement.release == before.name and (statement.previous_revision, statement.revision) == (
            1,
            2,
        )
        changed = {f.path: f for f in statement.files}
        old = {f.path: f.sha256 for f in before.files}
        new = {f.path: f.sha256 for f in summary.files}
        assert changed["cc-by/data.jsonl"].old_sha256 == old["cc-by/data.jsonl"]
        assert changed["cc-by/data.jsonl"].new_sha256 == new["cc-by/data.jsonl"]
        assert "cc-by/data.parquet" in changed and "cc0/data.jsonl" not in changed  # untouched bucket
        assert "revisions/r2.dsse.json" in new
    # Nothing pending any more: a second run changes nothing.
    assert not node.revise_releases()


def test_revision_a_second_withdrawal_makes_revision_three_keeping_the_first_statement(node: Node) -> None:
    member, _ = make_member(node)
    one, two, three = (contribute(node, member, license="CC0-1.0") for _ in range(3))
    process(node)
    node.cut_release()
    _withdraw(node, one)
    node.revise_releases()
    _withdraw(node, two)
    node.revise_releases()
    summary = node.store.read(lambda c: get_release(c, 1))
    folder = _served(node, summary)
    assert summary.revision == 3 and folder.name == "v1-r3"
    assert _uids(folder / "cc0/data.jsonl") == [three]
    key = node.identity.public_key
    assert [
        r.uid for r in verify_revision((folder / "revisions/r2.dsse.json").read_bytes(), key).removed
    ] == [one]
    assert [
        r.uid for r in verify_revision((folder / "revisions/r3.dsse.json").read_bytes(), key).removed
    ] == [two]
    _assert_whole(folder, summary)


def test_revision_rectified_record_leaves_past_releases_too(node: Node) -> None:
    member, _ = make_member(node)
    old = contribute(node, member, license="CC0-1.0", text=chat_text("first-wording-xyz"))
    process(node)
    node.cut_release()
    new, _, _ = node.edit(member, old, EditRequest(label=Label.FAIL), uuid7())
    assert new != old
    node.revise_releases()
    summary = node.store.read(lambda c: get_release(c, 1))
    folder = _served(node, summary)
    assert b"first-wording-xyz" not in _all_bytes(folder)
    statement = verify_revision((folder / "revisions/r2.dsse.json").read_bytes(), node.identity.public_key)
    assert statement.removed[0].uid == old and "rectified" in statement.removed[0].reason


def test_revision_revised_folder_loads_with_datasets(node: Node, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    member, _ = make_member(node)
    gone = contribute(node, member, license="CC-BY-SA-4.0")
    keep = contribute(node, member, license="CC-BY-SA-4.0")
    process(node)
    node.cut_release()
    _withdraw(node, gone)
    node.revise_releases()
    summary = node.store.read(lambda c: get_release(c, 1))
    loaded = datasets.load_dataset(
        str(_served(node, summary)), "cc-by-sa", split="train", cache_dir=str(tmp_path / "hf-cache")
    )
    assert loaded["uid"] == [keep]


def test_revision_not_released_record_revises_nothing(node: Node) -> None:
    member, _ = make_member(node)
    released = contribute(node, member, license="CC0-1.0")
    process(node)
    node.cut_release()
    accepted = contribute(node, member, license="CC0-1.0")
    process(node)
    _withdraw(node, accepted)
    report = node.revise_releases()
    assert report.revised == () and report.tombstones == 1
    summary = node.store.read(lambda c: get_release(c, 1))
    assert summary.revision == 1 and _uids(_served(node, summary) / "cc0/data.jsonl") == [released]


def test_revision_injected_failure_before_the_commit_keeps_the_old_revision_served(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    member, _ = make_member(node)
    gone = contribute(node, member, license="CC0-1.0")
    contribute(node, member, license="CC0-1.0")
    process(node)
    first = node.cut_release()

    def fail(*args: object, **kwargs: object) -> object:
        raise OSError("disk on fire")

    _withdraw(node, gone)
    with monkeypatch.context() as patch:
        patch.setattr(revision_module, "audit", fail)  # inside the commit's transaction
        with pytest.raises(Exception, match="disk on fire"):
            node.revise_releases()
    served = node.store.read(lambda c: get_release(c, 1))
    assert served == first and gone in _uids(_served(node, served) / "cc0/data.jsonl")
    _assert_whole(_served(node, served), served)
    # Still pending: the next run (the next start, at the latest) does it, and cleans up.
    node.revise_releases()
    served = node.store.read(lambda c: get_release(c, 1))
    assert served.revision == 2 and gone not in _uids(_served(node, served) / "cc0/data.jsonl")
    assert sorted(p.name for p in node.data.releases_path.iterdir() if p.name != "federated") == ["v1-r2"]


_KILLER = """
import os, signal, sys
from pathlib import Path
from coop.node.releases import revision
from coop.node.runtime import Node

stage = sys.argv[2]
if stage == "before-commit":
    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    revision.audit = die  # inside the transaction that points the row at the new folder
else:
    real = revision.shutil.rmtree
    def die_on_old(path, *args, **kwargs):
        if Path(path).name == "v1":  # the old folder, after the commit
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, *args, **kwargs)
    revision.shutil.rmtree = die_on_old
node = Node(Path(sys.argv[1]))
node.revise_releases()
"""


@pytest.mark.parametrize("stage", ["before-commit", "after-commit"])
def test_revision_kill_9_mid_revision_leaves_one_whole_revision_served(node: Node, stage: str) -> None:
    member, _ = make_member(node)
    gone = contribute(node, member, license="CC0-1.0")
    keep = contribute(node, member, license="CC0-1.0")
    process(node)
    node.cut_release()
    _withdraw(node, gone)
    root = node.data.root
    node.close()

    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_KILLER), str(root), stage],
        env=ENV,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()

    reopened = Node(root)
    try:
        served = reopened.store.read(lambda c: get_release(c, 1))
        folder = _served(reopened, served)
        _assert_whole(folder, served)  # whichever revision the row names is there, whole
        expected = 1 if stage == "before-commit" else 2
        assert served.revision == expected
        assert (gone in _uids(folder / "cc0/data.jsonl")) is (expected == 1)
        reopened.revise_releases()  # the pending tombstone: done again, leftovers removed
        served = reopened.store.read(lambda c: get_release(c, 1))
        assert served.revision == 2 and _uids(_served(reopened, served) / "cc0/data.jsonl") == [keep]
        assert sorted(p.name for p in reopened.data.releases_path.iterdir() if p.name != "federated") == [
            "v1-r2"
        ]
        _assert_whole(_served(reopened, served), served)
    finally:
        reopened.close()


# -- tombstone lists (defect 7) ----------------------------------------------------------------


def test_public_tombstones_name_only_public_records_a_release_held(node: Node) -> None:
    member, _ = make_member(node)
    public = contribute(node, member, scope="public")
    federation = contribute(node, member, scope="federation")
    home = contribute(node, member, scope="node")
    process(node)
    node.cut_release()
    unreleased = contribute(node, member, scope="public")
    process(node)
    for uid in (public, federation, home, unreleased):
        _withdraw(node, uid)
    summary = node.cut_release()
    listed = _uids(_served(node, summary) / "tombstones.jsonl")
    assert listed == [public]
    assert summary.tombstones == 1


def test_federated_tombstones_name_each_record_once_and_only_public_released_ones(node: Node) -> None:
    member, _ = make_member(node)
    public = contribute(node, member, scope="public")
    home = contribute(node, member, scope="node")
    process(node)
    node.cut_release()
    node.cut_federated_release()
    for uid in (public, home):
        _withdraw(node, uid)
    me = node.identity.node_id
    # The node's own tombstone, come back to it through a peer's gossip: still listed once.
    node.store.write(
        lambda c: c.execute("INSERT INTO fed_tombstones (origin, uid) VALUES (?, ?)", (me, public))
    )
    summary = node.cut_federated_release()
    lines = (_served(node, summary, federated=True) / "tombstones.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"origin": me, "uid": public}]
    earlier = node.store.read(lambda c: get_federated_release(c, 1))
    assert earlier.revision == 2  # and the withdrawn record left the earlier federated release
    assert public not in _released(_served(node, earlier, federated=True), earlier)


# -- mirrors: a record withdrawn at its origin leaves the peer's federated releases ------------


def test_revision_mirrored_record_withdrawn_at_its_origin_leaves_the_peers_federated_releases(
    tmp_path: Path,
) -> None:
    a, b = make_node(tmp_path, "Origin"), make_node(tmp_path, "Mirror")
    try:
        for node, other in ((a, b), (b, a)):
            other_id = other.identity.node_id
            node.federation.add_peer(f"http://127.0.0.1:9/{other_id[:8]}", other_id, name=None, actor="test")
        member, _ = make_member(a)
        secret = "okapi-lantern-5520"
        gone = contribute(a, member, scope="public", license="CC0-1.0", text=chat_text(secret))
        kept = contribute(a, member, scope="public", license="CC0-1.0")
        process(a)
        a.cut_release()
        a.federation.issue()

        def gossip() -> None:
            chain = a.federation.store.chain_after(a.identity.node_id, 0, 1000)
            b.federation.book.receive(chain, now=a.now())

        gossip()
        wanted = b.federation.book.record_wants()
        got, _ = a.federation.fetch([e.hash for _, e in wanted], requester=b.identity.node_id)
        b.federation.book.receive_records(wanted, got)
        first = b.cut_federated_release()
        assert secret.encode() in _all_bytes(_served(b, first, federated=True))

        _withdraw(a, gone)
        a.federation.issue()
        gossip()  # the tombstone arrives: the mirrored copy is deleted, the revision pending
        report = b.revise_releases()

        assert [(r.release, r.federated, r.revision) for r in report.revised] == [("v1", True, 2)]
        revised = b.store.read(lambda c: get_federated_release(c, 1))
        folder = _served(b, revised, federated=True)
        assert secret.encode() not in _all_bytes(folder)
        assert _released(folder, revised) == {kept}
        _assert_whole(folder, revised)
        statement = verify_revision((folder / "revisions/r2.dsse.json").read_bytes(), b.identity.public_key)
        assert [(r.origin, r.uid) for r in statement.removed] == [(a.identity.node_id, gone)]
        assert statement.federated and "origin" in statement.reason
        # The next federated release names it once, as a record that was public there.
        second = b.cut_federated_release()
        lines = (_served(b, second, federated=True) / "tombstones.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in lines] == [{"origin": a.identity.node_id, "uid": gone}]
    finally:
        a.close()
        b.close()


def test_revision_pending_bucket_files_are_refused_until_revised(node: Node) -> None:
    member, _ = make_member(node)
    gone = contribute(node, member, license="CC0-1.0")
    contribute(node, member, license="CC0-1.0")
    process(node)
    node.cut_release()
    node.cut_federated_release()
    with TestClient(create_app(node, background=False)) as http:
        assert gone in http.get("/releases/v1/cc0/data.jsonl").text
        _withdraw(node, gone)
        for path in (
            "/releases/v1/cc0/data.jsonl",
            "/releases/v1/cc0/data.parquet",
            "/releases/federated/v1/cc0/data.jsonl",
        ):
            refused = http.get(path)
            assert refused.status_code == 503 and refused.headers["retry-after"], path
        assert http.get("/releases/v1/SHA256SUMS").status_code == 200  # no record content in it
        node.revise_releases()
        served = http.get("/releases/v1/cc0/data.jsonl")
        assert served.status_code == 200 and gone not in served.text
        assert gone not in http.get("/releases/federated/v1/cc0/data.jsonl").text
        statement = http.get("/releases/v1/revisions/r2.dsse.json")
        assert [r.uid for r in verify_revision(statement.content, node.identity.public_key).removed] == [gone]


def test_reform_after_an_upgrade_takes_member_hashes_off_anonymous_rows_of_served_releases(
    node: Node,
) -> None:
    """Releases cut before anonymity was enforced carried the member's hash on anonymous rows:
    the one-time upgrade step revises them (same rows, new checksums, a signed statement)."""
    member, _ = make_member(node, "ada")
    anonymous = contribute(node, member, scope="public", license="CC0-1.0", attribution="anonymous")
    named = contribute(node, member, scope="public", license="CC0-1.0", attribution="username")
    process(node)
    summary = node.cut_release()
    folder = _served(node, summary)
    member_hash = node.store.read(
        lambda c: c.execute("SELECT contributor_hash FROM members WHERE name = 'ada'").fetchone()[0]
    )
    # As an earlier version wrote it: the anonymous row names the member's hash.
    path = folder / "cc0" / "data.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        if row["uid"] == anonymous:
            row["contributor_hash"] = member_hash
    path.write_text("".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in rows))
    node.store.write(lambda c: c.execute("INSERT INTO upgrade_steps (name) VALUES ('reform-releases')"))
    reopened = Node(node.data.root)  # the step runs when the node opens, before anything is served
    try:
        revised = reopened.store.read(lambda c: get_release(c, summary.version))
        served = _served(reopened, revised)
    finally:
        reopened.close()
    assert revised.revision == summary.revision + 1
    assert sorted(_uids(served / "cc0" / "data.jsonl")) == sorted([anonymous, named])
    for row in pq.read_table(served / "cc0" / "data.parquet").to_pylist() + [
        json.loads(line) for line in (served / "cc0" / "data.jsonl").read_text().splitlines()
    ]:
        if row["uid"] == anonymous:
            assert row["contributor_hash"] is None
        else:
            assert row["contributor_hash"] == member_hash
    _assert_whole(served, revised)
    key = node.identity.public_key
    statement = verify_revision((served / f"revisions/r{revised.revision}.dsse.json").read_bytes(), key)
    assert statement.removed == () and "identifiers" in statement.reason
    again = Node(node.data.root)  # struck off: opening again revises nothing
    try:
        assert again.store.read(lambda c: get_release(c, summary.version)).revision == revised.revision
    finally:
        again.close()
